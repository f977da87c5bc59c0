/* core.h — Ponte's internal core: the array and graph-node structures, buffers, the
 * primitive descriptor (one per primitive: evaluation per device and derivatives), and the
 * helpers every op constructor and kernel uses. Internal names: pnC_ (core), pnK_ (CPU
 * kernels), pnO_ (op helpers), pnT_ (transforms). Nothing here is public API. */
#ifndef PONTE_CORE_H
#define PONTE_CORE_H

#include "ponte.h"
#include "half.h"

#include <complex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Internal limits: ranks and operand counts for stack scratch space. */
#define PNC_MAX_NDIM 64
#define PNC_MAX_OPS 8

typedef float _Complex pn_complex64;

/* ───────────────────────────── dtypes ───────────────────────────── */

/* X(ENUM, ctype, short name) for every dtype: the one table of per-dtype variation. */
#define PN_FOR_EACH_DTYPE(X)                                                                   \
    X(PN_BOOL, bool, bool)                                                                     \
    X(PN_UINT8, uint8_t, u8)                                                                   \
    X(PN_UINT16, uint16_t, u16)                                                                \
    X(PN_UINT32, uint32_t, u32)                                                                \
    X(PN_UINT64, uint64_t, u64)                                                                \
    X(PN_INT8, int8_t, i8)                                                                     \
    X(PN_INT16, int16_t, i16)                                                                  \
    X(PN_INT32, int32_t, i32)                                                                  \
    X(PN_INT64, int64_t, i64)                                                                  \
    X(PN_FLOAT16, pn_float16, f16)                                                             \
    X(PN_FLOAT32, float, f32)                                                                  \
    X(PN_FLOAT64, double, f64)                                                                 \
    X(PN_BFLOAT16, pn_bfloat16, bf16)                                                          \
    X(PN_COMPLEX64, pn_complex64, c64)

static inline bool pnC_is_float(pn_dtype t)
{
    return t == PN_FLOAT16 || t == PN_FLOAT32 || t == PN_FLOAT64 || t == PN_BFLOAT16;
}
static inline bool pnC_is_inexact(pn_dtype t) { return pnC_is_float(t) || t == PN_COMPLEX64; }
static inline bool pnC_is_integer(pn_dtype t) { return t >= PN_UINT8 && t <= PN_INT64; }
static inline bool pnC_is_unsigned(pn_dtype t) { return t >= PN_UINT8 && t <= PN_UINT64; }
static inline bool pnC_is_half(pn_dtype t) { return t == PN_FLOAT16 || t == PN_BFLOAT16; }
static inline bool pnC_dtype_valid(pn_dtype t) { return (unsigned)t < PN_NUM_DTYPES; }

/* Element conversion through double (complex: through its real part unless both complex).
 * Slow but exact enough for scalars, printing and reference paths; kernels use typed loops. */
double pnC_load_f64(const void *p, pn_dtype t);
void pnC_store_f64(void *p, pn_dtype t, double v);
/* Converts n contiguous elements from one dtype to another (astype semantics). */
void pnC_convert(const void *src, pn_dtype st, void *dst, pn_dtype dt, int64_t n);

/* ───────────────────────────── errors ───────────────────────────── */

/* Records an error like pn_set_error and returns NULL: `return pnC_fail(...)`. */
void *pnC_fail(pn_error_kind kind, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Whether the calling thread carries an error. */
bool pnC_failed(void);
/* True when all n arrays are non-NULL. A NULL input with no error recorded yet records
 * "op: got a NULL array" so that the failure is never silent. */
bool pnC_inputs_ok(const char *op, int n, pn_array *const *arrays);

/* Cache keys, the disk cache, host builds and the kernel tables of generated kernels. */
#include "core/jit.h"

/* A map from non-NULL pointers to int64 values (src/core/ptrmap.c), zero-initialised empty:
 * `pnC_ptrmap m = {0};`. find gives the value's slot or NULL; put inserts or overwrites,
 * returning 0, or -1 with PN_ERR_OUT_OF_MEMORY "[who] Out of memory." (m unchanged); free
 * releases the table and empties m. Pointers stay valid only until the next put. */
typedef struct pnC_ptrmap {
    const void **keys;
    int64_t *vals;
    size_t cap, n;
} pnC_ptrmap;
int64_t *pnC_ptrmap_find(const pnC_ptrmap *m, const void *key);
int pnC_ptrmap_put(pnC_ptrmap *m, const void *key, int64_t val, const char *who);
void pnC_ptrmap_free(pnC_ptrmap *m);

/* ───────────────────────────── buffers ───────────────────────────── */

/* A reference-counted block of element memory. Views share one buffer. With the CUDA backend
 * a buffer may hold a host copy, a device copy or both; host_valid / device_valid say which
 * are current (DESIGN.md 6: unified memory, migrated on demand by the evaluator). */
typedef struct pnC_buffer {
    atomic_int refs;
    void *data;      /* host memory (64-byte aligned), or NULL while only the device has it */
    size_t nbytes;   /* bytes asked for */
    size_t capacity; /* bytes of the size class behind data */
    void *device;    /* the device copy, or NULL; on the GPU of `stream` */
    int stream;      /* the GPU stream that last used the device copy */
    uint8_t host_valid, device_valid;
} pnC_buffer;

/* A new host buffer of nbytes (zero-sized ones are fine). NULL with PN_ERR_OUT_OF_MEMORY. */
pnC_buffer *pnC_buffer_new(size_t nbytes);
/* A new buffer on the device of the node being evaluated (pnC_eval_gpu: device memory on
 * pnC_eval_stream; else host). NULL with an error. */
pnC_buffer *pnC_buffer_new_for_eval(size_t nbytes);
void pnC_buffer_retain(pnC_buffer *b);
void pnC_buffer_release(pnC_buffer *b);
/* Makes the host copy current (allocating it and copying from the device, after the device's
 * queued work). Returns 0 or -1 with an error. No-op without the CUDA backend. */
int pnC_buffer_to_host(pnC_buffer *b);
/* Makes the device copy current for use on GPU stream `stream` (copying from the host, or
 * ordering after the stream that last used it, or moving it from another GPU). Returns 0 or
 * -1 with an error. */
int pnC_buffer_to_device(pnC_buffer *b, int stream);

/* The evaluator's per-thread state while a kernel runs: whether it is a GPU kernel (then
 * pnC_data gives device pointers and pnC_alloc_output allocates device memory) and the GPU
 * stream it runs on. */
extern _Thread_local bool pnC_eval_gpu;
extern _Thread_local int pnC_eval_stream;
/* Whether the thread's GPU work is being recorded into a graph (eval's graph segments):
 * nothing of it has run yet, and a failed recording runs the same nodes again, so kernels
 * must leave their inputs as they were (pnC_donate declines). */
extern _Thread_local bool pnC_eval_capturing;

/* The caching allocator beneath buffers (src/core/allocator.c). */
void *pnC_alloc_bytes(size_t nbytes, size_t *capacity);
void pnC_free_bytes(void *p, size_t capacity);

/* ───────────────────────────── arrays and nodes ───────────────────────────── */

typedef struct pnC_node pnC_node;
typedef struct pnC_scope pnC_scope;

enum {
    PNC_ROW_CONTIGUOUS = 1, /* strides are row-major for the shape, data is dense */
    PNC_COL_CONTIGUOUS = 2, /* strides are column-major, data is dense */
};

struct pn_array {
    atomic_int refs;
    atomic_int retains; /* references taken with pn_retain (released before scope ownership) */
    pn_dtype dtype;
    int ndim;
    uint8_t weak;  /* a "weak" scalar (a Python number): takes the dtype of what it meets */
    uint8_t flags; /* PNC_*_CONTIGUOUS, valid once evaluated */
    int out_index; /* which output of node this is */
    pn_stream stream;
    pnC_node *node;  /* producer, strong; NULL for leaves and evaluated, detached arrays */
    pnC_buffer *buf; /* data once evaluated (NULL before) */
    int64_t offset;  /* in elements, into buf */
    int64_t size;    /* product of shape */
    pnC_scope *owner; /* scope owning the creation reference, or NULL */
    int64_t owner_slot;
    void *tag; /* scratch for transforms (never valid across calls) */
    int64_t *shape;   /* ndim extents (points into dims) */
    int64_t *strides; /* ndim strides in elements (points into dims), valid when evaluated */
    int64_t dims[];
};

/* Per-primitive evaluation: outputs already have shape and dtype; the kernel gives each a
 * buffer (pnC_alloc_output, pnC_donate or pnC_set_view) and fills it. Returns 0 or -1 with
 * an error. Inputs are evaluated on the same device. */
typedef int (*pnC_eval_fn)(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* Reverse mode: for i < nargs, write into grads[i] the cotangent of input argnums[i] (a new
 * array, or NULL for "no gradient" which means zero). cotangents[j] is the cotangent of
 * output j (NULL: zero). in/out are the node's inputs and outputs. Returns 0 or -1. */
typedef int (*pnC_vjp_fn)(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                          pn_array *const *cotangents, const int *argnums, int nargs,
                          pn_array **grads);

/* Forward mode: tangents[i] per input (NULL: zero); write out_tangents[j] per output
 * (NULL: zero). Returns 0 or -1. */
typedef int (*pnC_jvp_fn)(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                          pn_array *const *tangents, pn_array **out_tangents);

/* Batching: inputs with their mapped axis (-1: unmapped); write outputs and their mapped
 * axes. Returns 0 or -1. */
typedef int (*pnC_vmap_fn)(const pnC_node *node, pn_array *const *in, const int *in_axes,
                           pn_array **out, int *out_axes);

/* One primitive: the unit of extension (docs/adding-an-op.md). */
typedef struct pnC_primitive {
    const char *name;
    pnC_eval_fn eval[PN_NUM_DEVICE_TYPES]; /* [PN_CPU], [PN_GPU] (NULL: not on that device) */
    pnC_vjp_fn vjp;                         /* NULL: not differentiable (error if needed) */
    pnC_jvp_fn jvp;
    pnC_vmap_fn vmap;
    /* Called on a node's params when the node is freed (NULL: nothing to do), for params that
     * hold references (closures). */
    void (*release_params)(void *params);
    /* Called on every copy of params that release_params will give back: a new node's, and a
     * compiled trace's (pnC_params_copied). NULL with release_params set: a compiled trace
     * cannot keep such a node, and compile refuses the function. */
    void (*retain_params)(void *params);
    /* The node acts beyond computing its outputs (it communicates): compile never merges two
     * such nodes as common subexpressions. */
    bool effectful;
    /* Eval never records its GPU kernel into a CUDA graph (graph segments, eval.c): the
     * kernel reads results back to the host as it runs (the solvers' status words), or its
     * library binds a stream to cached state (cuFFT's plans). */
    bool not_in_graphs;
    /* Reverse mode calls the vjp for inputs that depend on a tracer through integer arrays
     * too (they get no derivative otherwise), so that it can refuse them as MLX does (the
     * quantized matmuls' packed weights and scales); a derivative it returns is dropped. */
    bool vjp_sees_integer_inputs;
    /* Writes the name export_to_dot shows for node into buf (n bytes, NUL-terminated); NULL:
     * the primitive's name. */
    void (*label)(const pnC_node *node, char *buf, size_t n);
} pnC_primitive;

/* A copy of params of p was made / is being dropped outside a node (a compiled trace): takes
 * or gives back the references they hold, for primitives that can share them. */
static inline void pnC_params_copied(const pnC_primitive *p, void *params)
{
    if (p->retain_params) p->retain_params(params);
}
static inline void pnC_params_dropped(const pnC_primitive *p, void *params)
{
    if (p->retain_params && p->release_params) p->release_params(params);
}

struct pnC_node {
    atomic_int refs;
    const pnC_primitive *prim;
    int nin, nout;
    pn_array **inputs;  /* strong references */
    pn_array **outputs; /* weak: an output clears its slot when it dies */
    pn_dtype *out_dtypes; /* nout entries each: dtype, shape and rank of every output */
    int64_t **out_shapes;
    int *out_ndims;
    pn_stream stream;
    uint64_t mark; /* graph-walk scratch */
    size_t params_size;
    void *params; /* params_size bytes, copied at creation (a plain struct) */
};

/* Params of node as type T: `const my_params *p = PNC_PARAMS(node, my_params);`. */
#define PNC_PARAMS(node, T) ((const T *)(node)->params)

/* Creates the lazy single output of primitive p over the inputs, on the current stream.
 * params (params_size bytes, may be 0) are copied. Returns NULL if an input is NULL (sticky
 * error) or on allocation failure. Inputs are retained by the node. */
pn_array *pnC_make(const pnC_primitive *p, const void *params, size_t params_size, int nin,
                   pn_array *const *inputs, pn_dtype dtype, const int64_t *shape, int ndim);
/* The same with nout outputs written to out. Returns 0 or -1. */
int pnC_make_multi(const pnC_primitive *p, const void *params, size_t params_size, int nin,
                   pn_array *const *inputs, int nout, const pn_dtype *dtypes,
                   const int64_t *const *shapes, const int *ndims, pn_array **out);
/* A new evaluated leaf: shape/dtype set and an uninitialized row-contiguous buffer. */
pn_array *pnC_new_leaf(pn_dtype dtype, const int64_t *shape, int ndim);
/* Output j of node: the live array (borrowed), or one rebuilt and adopted by the current
 * scope (open a scope first). NULL on out of memory. */
pn_array *pnC_node_output(pnC_node *node, int j);
/* As pnC_node_output for a dead output, but owned by the caller alone (pnC_decref). */
pn_array *pnC_node_temp_output(pnC_node *node, int j);
void pnC_node_retain(pnC_node *node);
void pnC_node_release(pnC_node *node);
/* A new evaluated leaf owned by the caller alone, never by a scope (kernel temporaries):
 * release with pnC_decref. */
pn_array *pnC_new_temp(pn_dtype dtype, const int64_t *shape, int ndim);
/* Adds one internal reference (no scope or pn_retain bookkeeping); drop it with pnC_decref. */
pn_array *pnC_incref(pn_array *a);
/* Drops one reference without touching scope ownership (for pnC_new_temp, pnC_contiguous,
 * and references taken with pnC_incref). */
void pnC_decref(pn_array *a);
/* A new handle on the same values (zero-copy; keeps the graph connected for autodiff). */
pn_array *pnC_alias(pn_array *a);
extern const pnC_primitive pnC_alias_prim;

/* Gives out a fresh row-contiguous buffer of its size. Returns 0 or -1 (out of memory). */
int pnC_alloc_output(pn_array *out);
/* Makes out a view of src's buffer with the given element offset and strides (ndim(out)
 * entries); flags are recomputed. */
void pnC_set_view(pn_array *out, const pn_array *src, int64_t offset, const int64_t *strides);
/* A new evaluated view of a's buffer broadcast to shape (a's shape must broadcast to it),
 * owned by the caller alone (pnC_decref); NULL with an error otherwise or out of memory. */
pn_array *pnC_broadcast_view(const pn_array *a, const int64_t *shape, int ndim);
/* Moves in's buffer to out when nothing else can see it (only the graph holds in, its buffer
 * is not shared, both are row-contiguous with the same element size and count, and no
 * transformation is tracing). Returns true when donated. */
bool pnC_donate(pn_array *out, pn_array *in);
/* Element pointer of an evaluated array (buffer data + offset): the device copy while a GPU
 * kernel runs (pnC_eval_gpu), else the host copy. Outside kernels, read data only after
 * pnC_eval1, which makes the host copy current. */
static inline void *pnC_data(const pn_array *a)
{
    char *base = (char *)(pnC_eval_gpu ? a->buf->device : a->buf->data);
    return base + a->offset * (int64_t)pn_dtype_size(a->dtype);
}
/* Row-major strides for a shape. */
void pnC_row_strides(const int64_t *shape, int ndim, int64_t *strides);
/* Recomputes a's contiguity flags from its shape and strides. */
void pnC_update_flags(pn_array *a);
static inline bool pnC_row_contiguous(const pn_array *a) { return a->flags & PNC_ROW_CONTIGUOUS; }

/* Evaluates a single array (pn_eval on one) and makes its host copy current, for code that
 * reads its data on the host (printing, item, pn_data, files). */
int pnC_eval1(pn_array *a);

/* How many node evaluations on a GPU stream ran a CPU kernel instead (no GPU kernel for the
 * case); see PONTE_GPU_STRICT in eval.c. */
int64_t pnC_gpu_fallback_count(void);

/* Kernel calls per primitive and device, counted from pnC_count_kernels(true) on (off by
 * default: one relaxed load per kernel), for the conformance test's proof that every
 * primitive ran through its own kernel on each backend. kernel_calls: calls of p's kernel for
 * dev (a GPU node that fell back to the CPU counts for the CPU). */
void pnC_count_kernels(bool on);
int64_t pnC_kernel_calls(const pnC_primitive *p, pn_device_type dev);

/* Shared by derivative and batching rules (src/ops/rules.c). pnC_sum_to_shape: x summed
 * down to `shape`, which x's shape broadcasts from (leading extra axes and axes where shape has
 * 1), x itself when the shapes agree. pnC_batch_front: x with its mapped axis (axis < 0: x
 * unchanged) moved to the front and size-1 axes inserted after it up to `rank` unmapped axes,
 * so that the batch axis lines up across inputs. Both return arrays owned by the current
 * scope, NULL with an error. */
pn_array *pnC_sum_to_shape(pn_array *x, const int64_t *shape, int ndim);
pn_array *pnC_batch_front(pn_array *x, int axis, int rank);
/* Batching rules of ops whose inputs must all carry the batch (rules.c). pnC_batch_extent:
 * the batch size of the mapped inputs (in[i] with axes[i] >= 0), 0 when none is mapped;
 * pnC_any_mapped: whether one of the n axes is >= 0.
 * pnC_batch_lead: x with its mapped axis first, or, unmapped, broadcast (a view) along a new
 * first axis of extent B. pnC_batch_shape: (B, shape...) into out, its rank returned (-1 with
 * an error past PNC_MAX_NDIM). pnC_batch_rebuild: the node remade over in with its own params
 * and output shapes, every output unmapped (a rule's case of no mapped input). */
int64_t pnC_batch_extent(pn_array *const *in, const int *axes, int n);
bool pnC_any_mapped(const int *axes, int n);
pn_array *pnC_batch_lead(pn_array *x, int axis, int64_t B);
int pnC_batch_shape(int64_t B, const int64_t *shape, int ndim, int64_t *out);
int pnC_batch_rebuild(const pnC_node *node, pn_array *const *in, pn_array **out, int *out_axes);
/* The batching rule of a primitive whose output has its input's shape (Copy, AsType, Full,
 * elementwise-like nodes with one input): the same node over the batched input, mapped at the
 * same axis. */
int pnC_vmap_same_shape(const pnC_node *node, pn_array *const *in, const int *in_axes,
                        pn_array **out, int *out_axes);
/* gather_mm / gather_qmm / gather_qqmm (rules.c): the batch indices of both operands (each
 * lhs / rhs, or when NULL an arange over its operand's flattened batch, all but the last two
 * axes, shaped as those axes) broadcast together into bidx[2]: 0, or -1 with an error (NULL
 * x or y: a failed op before); and x (..., R, C) flattened to (B, R, C) with the batch items
 * at indices taken: (indices.shape..., R, C) (NULL x: NULL). */
int pnC_gather_indices(pn_array *x, pn_array *lhs, pn_array *y, pn_array *rhs, pn_array **bidx);
pn_array *pnC_take_batch(pn_array *x, pn_array *indices);

/* Asynchronous evaluation (eval.c). While a pn_async_eval job runs on the worker thread,
 * code elsewhere that reads or changes graph links (an array's node or buffer, a node's weak
 * outputs) brackets it with pnC_graph_lock, which returns whether it locked (not when no job
 * runs or this thread holds the lock already); pass the result to pnC_graph_unlock. */
bool pnC_graph_lock(void);
void pnC_graph_unlock(bool locked);
/* Waits until no asynchronous evaluation is in flight (returns at once on the worker). */
void pnC_async_wait(void);
/* Whether an asynchronous evaluation is in flight. */
bool pnC_async_busy(void);

/* Marks the calling thread as tracing a transformation: evaluation then keeps the graph
 * (no detaching, no donation) so derivatives can walk it. Nests. */
void pnC_trace_push(void);
void pnC_trace_pop(void);
bool pnC_tracing(void);

/* Scope helpers for composite ops: run with an internal scope and move the results out.
 *   pnC_scope_push(); ... r = ...; return pnC_scope_return(r);   (NULL-safe) */
pn_array *pnC_scope_return(pn_array *result);
/* The calling thread's innermost open scope, or NULL. */
pnC_scope *pnC_current_scope(void);

/* ───────────────────────────── shapes and axes ───────────────────────────── */

/* Normalizes axis for rank ndim into [0, ndim). Returns -1 with an error naming op. */
int pnC_axis(const char *op, int axis, int ndim);
/* Normalizes and checks axes (no duplicates) into out; axes == NULL means all (0..ndim-1).
 * Returns the count, or -1 with an error. out needs PNC_MAX_NDIM entries. */
int pnC_axes(const char *op, const int *axes, int naxes, int ndim, int *out);
/* numpy broadcasting of two shapes into out (PNC_MAX_NDIM entries). Returns the rank or -1
 * with an error naming op and both shapes. */
int pnC_broadcast_shapes(const char *op, const int64_t *a, int na, const int64_t *b, int nb,
                         int64_t *out);
/* Whether a's shape broadcasts to exactly shape (numpy rules: a's rank at most ndim, each of
 * its dimensions from the right 1 or equal). */
bool pnC_broadcasts_to(const pn_array *a, const int64_t *shape, int ndim);
/* a broadcast against like's shape (shape.c): a Broadcast node that keeps like as the source
 * of its shape, so a shapeless compiled replay follows like's new shape; like gets no
 * gradient. NULL with an error when the shapes do not broadcast. */
pn_array *pnC_broadcast_like(pn_array *a, pn_array *like);
/* Checks a shape (non-negative extents, rank within limits). Returns 0 or -1 with error. */
int pnC_check_shape(const char *op, const int64_t *shape, int ndim);
int64_t pnC_shape_size(const int64_t *shape, int ndim);
/* "(2,3,4)" into buf. */
const char *pnC_shape_str(const int64_t *shape, int ndim, char *buf, size_t n);
/* The same into a buffer of the calling expression's own, for error messages. */
#define PNC_SHAPE_STR(shape, ndim) pnC_shape_str((shape), (ndim), (char[512]){0}, 512)

/* The kernel profile (profile.c): on when PONTE_PROFILE is set (not "0"); eval times each
 * kernel call with pnC_profile_clock and records it with pnC_profile_add (out0: the node's
 * first output); the table is printed to stderr at exit. */
bool pnC_profile_on(void);
double pnC_profile_clock(void);
void pnC_profile_add(const pnC_node *nd, const pn_array *out0, double seconds);

/* ───────────────────────────── type promotion ───────────────────────────── */

/* MLX's result dtype of combining the n arrays (weak scalars adapt to the others). */
pn_dtype pnC_result_type(int n, pn_array *const *arrays);

/* ───────────────────────────── strided iteration ───────────────────────────── */

/* Walks nop operands of one shape, each with its own element strides, as rows of an inner
 * loop. Dimensions that are contiguous for every operand are merged first, so a dense array
 * is one long row. Rows can be visited from any start, for threads. */
typedef struct pnC_nditer {
    int ndim; /* after merging; dim ndim-1 is the inner loop */
    int nop;
    int64_t shape[PNC_MAX_NDIM];
    int64_t strides[PNC_MAX_OPS][PNC_MAX_NDIM];
    int64_t inner;            /* shape[ndim-1] (1 for 0-d) */
    int64_t rows;             /* product of the outer extents */
    int64_t inner_stride[PNC_MAX_OPS];
} pnC_nditer;

void pnC_nditer_init(pnC_nditer *it, int ndim, const int64_t *shape, int nop,
                     const int64_t *const *strides);
/* Sets idx (outer index, it->ndim entries) and the element offsets of row `row`. */
void pnC_nditer_seek(const pnC_nditer *it, int64_t row, int64_t *idx, int64_t *offsets);
/* Advances idx/offsets to the next row. */
void pnC_nditer_next(const pnC_nditer *it, int64_t *idx, int64_t *offsets);

/* Copies shape[ndim] elements from src (element strides src_strides, dtype st) to dst
 * (dst_strides, dt), converting dtype when they differ. Threaded; transposes go in tiles. */
void pnC_strided_copy(const void *src, const int64_t *src_strides, pn_dtype st, void *dst,
                      const int64_t *dst_strides, pn_dtype dt, const int64_t *shape, int ndim);
/* Copies src (any strides) into dst laid out row-major (same dtype). Threaded. */
void pnC_copy_to_contiguous(const pn_array *src, void *dst);
/* Copies the elements [start, start + count) of a, in row-major order of its shape, densely to
 * dst (a's dtype; any strides, a broadcast dimension repeated). Not threaded: for a tile of a
 * kernel that reads a strided input in place. */
void pnC_gather_range(const pn_array *a, int64_t start, int64_t count, void *dst);
/* Copies src into dst viewed with dst_strides/dst_offset (same dtype), converting dtype if
 * they differ. General strided copy used by views, astype and slice_update. */
void pnC_copy_strided(const pn_array *src, pn_array *dst);
/* The row-contiguous version of an evaluated array: a itself (retained) when it already is,
 * else a new evaluated copy. Release with pnC_decref. NULL on out of memory. */
pn_array *pnC_contiguous(pn_array *a);

/* ───────────────────────────── threads ───────────────────────────── */

/* Elements below which a loop stays on one thread. */
#define PNC_PAR_GRAIN 32768

#endif /* PONTE_CORE_H */
