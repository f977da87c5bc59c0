/* ponte.h — the public C API of Ponte, a lazy array framework for machine learning.
 *
 * Conventions (read these once; every function below follows them):
 *  - Arrays are handles (pn_array *), reference counted and lazy: an op returns at once with
 *    its shape and dtype known; data is computed by pn_eval (or when it is read).
 *  - Ownership: an array returned by the library belongs to the innermost open scope
 *    (pn_scope_push) of the calling thread, or to the caller when no scope is open. The
 *    owner gives it up with pn_release (safe in both cases). pn_retain adds an independent
 *    reference that outlives scopes. Inputs are never consumed: ops retain what they need.
 *  - Errors: a function that fails returns NULL (or a negative int) and sets a thread-local
 *    error with a kind and a message. Errors are sticky: an op given a NULL input returns NULL
 *    and keeps the first error, so pn_add(pn_matmul(x, w), b) needs a single check.
 *  - Axes may be negative (counted from the end). "axes == NULL" means all axes; a single
 *    axis argument takes PN_ALL_AXES to mean "over the flattened array" (MLX's axis=None).
 *  - Names, argument order and semantics follow mlx.core: pn_X is mlx.core.X.
 */
#ifndef PONTE_H
#define PONTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PONTE_VERSION_MAJOR 0
#define PONTE_VERSION_MINOR 1
#define PONTE_VERSION_PATCH 0

/* ───────────────────────────── dtypes ───────────────────────────── */

/* Element types, in mlx.core.Dtype's order. */
typedef enum pn_dtype {
    PN_BOOL = 0,
    PN_UINT8,
    PN_UINT16,
    PN_UINT32,
    PN_UINT64,
    PN_INT8,
    PN_INT16,
    PN_INT32,
    PN_INT64,
    PN_FLOAT16,
    PN_FLOAT32,
    PN_FLOAT64,
    PN_BFLOAT16,
    PN_COMPLEX64,
    PN_NUM_DTYPES
} pn_dtype;

/* Categories of dtypes, as mlx.core's: used by pn_issubdtype. */
typedef enum pn_dtype_category {
    PN_CAT_GENERIC = 0,
    PN_CAT_NUMBER,
    PN_CAT_INTEGER,
    PN_CAT_UNSIGNEDINTEGER,
    PN_CAT_SIGNEDINTEGER,
    PN_CAT_INEXACT,
    PN_CAT_FLOATING,
    PN_CAT_COMPLEXFLOATING,
    PN_CAT_BOOL
} pn_dtype_category;

/* Size of one element in bytes (bool is 1). */
size_t pn_dtype_size(pn_dtype dtype);
/* MLX's name of the dtype ("float32", "bfloat16", ...); "invalid" for a bad value. */
const char *pn_dtype_name(pn_dtype dtype);
/* The dtype that a and b promote to under MLX's rules. */
pn_dtype pn_promote_types(pn_dtype a, pn_dtype b);
/* Whether dtype belongs to category (or equals it, for the concrete-dtype form). */
bool pn_issubdtype(pn_dtype dtype, pn_dtype_category category);

/* ───────────────────────────── errors ───────────────────────────── */

typedef enum pn_error_kind {
    PN_OK = 0,
    PN_ERR_INVALID_ARGUMENT, /* wrong shape, dtype, axis, index, ... (Python: ValueError) */
    PN_ERR_OUT_OF_MEMORY,    /* an allocation failed after the cache was released (MemoryError) */
    PN_ERR_IO,               /* a file could not be read or written, or is malformed (OSError) */
    PN_ERR_BACKEND,          /* a device or library failed, or an op is missing (RuntimeError) */
    PN_ERR_TYPE              /* a wrong kind of argument (TypeError) */
} pn_error_kind;

/* The kind of the calling thread's first unhandled error, or PN_OK. */
pn_error_kind pn_last_error(void);
/* Its message ("" when there is none). Valid until the next pn_clear_error on this thread. */
const char *pn_last_error_message(void);
/* Forgets the calling thread's error; later ops can fail afresh. */
void pn_clear_error(void);
/* Records an error on the calling thread (the first one sticks). For bindings and closures
 * that want their failure to travel like a Ponte error. Returns -1 for convenience. */
int pn_set_error(pn_error_kind kind, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ───────────────────────────── devices and streams ───────────────────────────── */

typedef enum pn_device_type { PN_CPU = 0, PN_GPU = 1, PN_NUM_DEVICE_TYPES } pn_device_type;

typedef struct pn_device {
    pn_device_type type;
    int index;
} pn_device;

typedef struct pn_stream {
    int index; /* process-wide stream id */
    pn_device device;
} pn_stream;

/* The device ops run on when no stream is chosen: the GPU when a usable CUDA device is
 * present (gpu:0), else the CPU; PONTE_DEVICE=cpu|gpu|gpu:k in the environment overrides the
 * choice. */
pn_device pn_default_device(void);
/* Sets the default device. Fails (returns -1) when the device is not available. */
int pn_set_default_device(pn_device device);
/* Whether device d (its type and index) can run ops in this process. */
bool pn_is_available(pn_device device);
/* How many devices of a type the process can address: 1 CPU; the CUDA devices it sees that can
 * run Ponte (compute capability 8.0 or newer), gpu:0 .. gpu:n-1 in CUDA's order: Ponte's index
 * is CUDA's unless an older device before it was skipped (as TensorFlow does; a line on stderr
 * names each one skipped). 0 without a usable GPU. A process started by a multi-process
 * launcher sees its own GPU only, as gpu:0: usable GPU (local rank mod their count), unless
 * PONTE_GPU_PER_RANK=0 (see DESIGN.md, distributed). */
int pn_device_count(pn_device_type type);
/* Whether a usable CUDA GPU is present; when not, pn_gpu_unavailable_reason says why. */
bool pn_gpu_available(void);
const char *pn_gpu_unavailable_reason(void);
/* Whether float32 matrix products on the GPU (matmul, addmm, the GEMMs of convolutions) may
 * use TF32 tensor cores: inputs rounded to 10 mantissa bits, float32 accumulation, about
 * 1e-3 relative error per product for several times the speed. As MLX: on unless the
 * environment sets MLX_ENABLE_TF32=0 (or PONTE_ENABLE_TF32=0, which takes precedence); the
 * CPU and the other dtypes are unaffected. pn_set_tf32_enabled overrides the environment for
 * every GEMM evaluated after the call (those of a graph built before it included). */
bool pn_tf32_enabled(void);
void pn_set_tf32_enabled(bool enabled);
/* The default stream of a device. */
pn_stream pn_default_stream(pn_device device);
/* Makes s the default stream of its device (mlx.core.set_default_stream); the default
 * device does not change. Returns 0, or -1 when s's device is not available. */
int pn_set_default_stream(pn_stream s);
/* A new stream on the device; work on it orders itself against other streams by events. */
pn_stream pn_new_stream(pn_device device);
/* Makes s the stream of new ops on this thread until the matching pn_stream_pop
 * (mlx.core.stream(s) as a context manager). */
int pn_stream_push(pn_stream s);
void pn_stream_pop(void);
/* The stream new ops on this thread go to. */
pn_stream pn_current_stream(void);
/* Waits until all work queued on s has finished. */
int pn_synchronize(pn_stream s);

/* Device properties (mlx.core.device_info; issue 4, python signature tables). */
typedef struct pn_device_info {
    char name[256];         /* the CPU's model name, or the GPU's name */
    char architecture[64];  /* the CPU's machine ("x86_64", "aarch64"), or "sm_<major><minor>" */
    uint64_t memory_size;   /* bytes: the machine's RAM, or the GPU's global memory; 0: unknown */
    uint64_t free_memory;   /* bytes: available RAM, or the GPU's free memory; 0: unknown */
} pn_device_info;
/* Fills *info for device d (the CPU from the operating system; a GPU through the CUDA
 * runtime, the simulated one included). Returns 0, or -1 with PN_ERR_INVALID_ARGUMENT when d
 * is not available (the GPU without a usable CUDA device). */
int pn_get_device_info(pn_device d, pn_device_info *info);
/* The calling thread's global random key as it stands (uint32, shape (2,); seeded from the
 * clock first when pn_random_seed was never called, as the first draw would): what
 * mlx.core.random.state holds. Changes with pn_random_seed and with every keyless draw. */
struct pn_array *pn_random_state(void);

/* ───────────────────────────── arrays ───────────────────────────── */

typedef struct pn_array pn_array;

/* Adds a reference that the caller owns independently of any scope. Returns a. */
pn_array *pn_retain(pn_array *a);
/* Gives up the caller's ownership of a (held directly or through the current scope).
 * The graph keeps what pending computations need. NULL is ignored. */
void pn_release(pn_array *a);

int pn_ndim(const pn_array *a);
/* Pointer to ndim extents, valid while a lives. */
const int64_t *pn_shape(const pn_array *a);
/* Extent of axis (negative counts from the end); -1 with an error for a bad axis. */
int64_t pn_dim(const pn_array *a, int axis);
int64_t pn_size(const pn_array *a);
pn_dtype pn_array_dtype(const pn_array *a);
size_t pn_itemsize(const pn_array *a);
size_t pn_nbytes(const pn_array *a);
/* Whether a's data has been computed. */
bool pn_is_evaluated(const pn_array *a);

/* A new array holding a copy of the row-major data (shape[ndim] elements of dtype). */
pn_array *pn_array_from_data(const void *data, const int64_t *shape, int ndim, pn_dtype dtype);
/* A 0-d array holding value converted to dtype. */
pn_array *pn_scalar(double value, pn_dtype dtype);
pn_array *pn_scalar_int(int64_t value, pn_dtype dtype);
pn_array *pn_scalar_complex(float re, float im);
/* "Weak" scalars, as Python numbers in MLX: they take the dtype of the array they meet
 * (x + 2 keeps x's dtype; an int array + 0.5 becomes float32). */
pn_array *pn_weak_float(double value);
pn_array *pn_weak_int(int64_t value);
pn_array *pn_weak_bool(bool value);

/* Evaluates a and copies its elements in row-major order into dst, which has room for
 * dst_bytes. Returns 0, or -1 with an error (e.g. dst too small). */
int pn_to_host(pn_array *a, void *dst, size_t dst_bytes);
/* Evaluates a and returns a pointer to its row-major contiguous elements on the host, valid
 * while a lives and is not modified. NULL with an error on failure. */
const void *pn_data(pn_array *a);
/* Evaluates a size-1 array and returns its value as double / int64 (complex: real part). */
double pn_item(pn_array *a);
int64_t pn_item_int(pn_array *a);

/* MLX's printed form of a ("array([[1, 2],\n       [3, 4]], dtype=int32)"), newly malloc'd;
 * free it with pn_free_string. NULL with an error on failure. */
char *pn_to_string(pn_array *a);
void pn_free_string(char *s);
/* Prints pn_to_string(a) and a newline to f. Returns 0 or -1. */
int pn_print(FILE *f, pn_array *a);
/* Print options (mlx.core.set_printoptions), process-wide: precision -1 (the default) prints
 * floats in C++'s default form (6 significant digits, "%g"); any other value prints them in
 * fixed notation with that many decimals ("%.*f"; negative values mean 6, as std::fixed).
 * Integers and bools are not affected. */
typedef struct pn_print_options {
    int precision;
} pn_print_options;
void pn_set_print_options(pn_print_options options);
pn_print_options pn_get_print_options(void);

/* ───────────────────────────── evaluation ───────────────────────────── */

/* Computes the n arrays (and everything they depend on). NULL entries are an error.
 * Returns 0, or -1 with the error of the failing op. */
int pn_eval(pn_array *const *arrays, int n);
/* Starts computing the arrays on a worker thread and returns at once; the caller may go on
 * building (and releasing) arrays meanwhile. Reading their data, pn_eval of anything not yet
 * computed, transforms and pn_synchronize wait for it. One job runs at a time (a second call
 * waits for the first). When the graph has GPU nodes (queued on their streams
 * asynchronously anyway), it evaluates before returning. An error inside the job leaves the
 * failed arrays unevaluated: evaluating them again reports it. Returns 0, or -1 for a bad
 * array list, and (PN_ERR_INVALID_ARGUMENT, as MLX) when called inside a transform (grad,
 * vjp, jvp, vmap, a compile trace). */
int pn_async_eval(pn_array *const *arrays, int n);
/* mlx.core.export_to_dot: writes the graph of the n outputs and of every unevaluated array
 * they depend on to f in Graphviz DOT, as MLX does: arrays with no pending computation are
 * sources ({ rank=source; "A"; }), each primitive a rectangle labelled with its name
 * ({ <node id> [label ="Add", shape=rectangle]; }) with edges from its inputs and to its
 * outputs, the given outputs sinks. Arrays are named A, B, ..., Z, AA, AB, ... in the order
 * the depth-first walk meets them, except the nnamed arrays named[i], which are called
 * names[i] (and take up a letter). Returns 0, or -1 with an error (PN_ERR_IO when writing
 * fails). */
int pn_export_to_dot(FILE *f, pn_array *const *outputs, int n, pn_array *const *named,
                     const char *const *names, int nnamed);
/* mlx.core.depends: out[i] equals inputs[i] (a zero-copy view), and evaluating it evaluates
 * the ndeps dependencies first. Gradients and tangents flow to inputs[i] only. Returns 0, or
 * -1 with an error (out[] all NULL). */
int pn_depends(pn_array *const *inputs, int n, pn_array *const *dependencies, int ndeps,
               pn_array **out);

/* ───────────────────────────── scopes ───────────────────────────── */

/* Opens a scope: arrays returned until the matching pop belong to it. */
void pn_scope_push(void);
/* Closes the innermost scope, releasing every array it owns. */
void pn_scope_pop(void);
/* Closes the innermost scope, releasing what it owns except the n arrays in keep, which move
 * to the enclosing scope (or to the caller when none is open). */
void pn_scope_pop_keep(pn_array *const *keep, int n);
/* Takes a out of the scope that owns it: the caller now owns that reference directly and
 * gives it up with pn_release (for handles stored beyond the scope, e.g. in a binding's
 * objects). An array no scope owns is returned unchanged. Returns a. */
pn_array *pn_scope_take(pn_array *a);
/* Depth of the calling thread's scope stack. */
int pn_scope_depth(void);

/* ───────────────────────────── memory ───────────────────────────── */

/* Bytes in arrays now / at the peak since start or the last reset (a reset makes it 0, as
 * MLX, until the next allocation) / held in the cache: the host's and every GPU's together. */
size_t pn_get_active_memory(void);
size_t pn_get_peak_memory(void);
void pn_reset_peak_memory(void);
size_t pn_get_cache_memory(void);
/* Limits; each returns the previous value. An allocation that would pass a memory limit the
 * program set empties the cache and fails with PN_ERR_OUT_OF_MEMORY if still too big. 0 = no
 * limit. The host memory limit starts as MLX's CPU default, 0.8 of the physical memory (0
 * where the system does not report it), which is reported but, as by MLX's CPU allocator, not
 * enforced (setting it back to that value returns to this); a GPU's pool has no limit until
 * one is set (setting one sets the host's and each GPU's). The cache limit starts unlimited
 * and also applies to each GPU. */
size_t pn_set_memory_limit(size_t limit);
/* The host memory limit (0: none). */
size_t pn_get_memory_limit(void);
size_t pn_set_cache_limit(size_t limit);
/* Returns cached buffers to the system. */
void pn_clear_cache(void);
/* One device's figures (torch.cuda.memory_allocated / max_memory_allocated / the cache, per
 * device): bytes in arrays on it now, the peak of that since the last pn_reset_peak_memory,
 * bytes in its cache. Any argument may be NULL. The CPU's are the host's. 0, or -1 with
 * PN_ERR_INVALID_ARGUMENT when d is not available. */
int pn_get_device_memory(pn_device d, size_t *active, size_t *peak, size_t *cache);

/* ───────────────────────────── creation ───────────────────────────── */

pn_array *pn_zeros(const int64_t *shape, int ndim, pn_dtype dtype);
pn_array *pn_ones(const int64_t *shape, int ndim, pn_dtype dtype);
/* vals broadcast to shape, cast to dtype. */
pn_array *pn_full(const int64_t *shape, int ndim, pn_array *vals, pn_dtype dtype);
/* start, start+step, ... < stop (MLX: float dtypes when any bound is a float). */
pn_array *pn_arange(double start, double stop, double step, pn_dtype dtype);
pn_array *pn_linspace(double start, double stop, int64_t num, pn_dtype dtype);
/* n×m (m<0 means n) with ones on diagonal k. */
pn_array *pn_eye(int64_t n, int64_t m, int k, pn_dtype dtype);
pn_array *pn_identity(int64_t n, pn_dtype dtype);
/* n×m with ones at and below diagonal k. */
pn_array *pn_tri(int64_t n, int64_t m, int k, pn_dtype dtype);
pn_array *pn_tril(pn_array *a, int k);
pn_array *pn_triu(pn_array *a, int k);
pn_array *pn_zeros_like(pn_array *a);
pn_array *pn_ones_like(pn_array *a);
pn_array *pn_full_like(pn_array *a, pn_array *vals);
/* An array of a's shape holding vals (broadcast to it) cast to dtype. With one value the
 * result keeps a as the source of its shape: a shapeless compiled replay gives a's new shape
 * (MLX's zeros_like / ones_like / full_like); a gets no gradient. */
pn_array *pn_full_like_dtype(pn_array *a, pn_array *vals, pn_dtype dtype);
pn_array *pn_astype(pn_array *a, pn_dtype dtype);
pn_array *pn_copy(pn_array *a);

/* ───────────────────────────── elementwise ───────────────────────────── */

/* Unary: MLX's names and dtype rules (math on integers gives float32). */
pn_array *pn_abs(pn_array *a);
pn_array *pn_negative(pn_array *a);
pn_array *pn_sign(pn_array *a);
pn_array *pn_sqrt(pn_array *a);
pn_array *pn_rsqrt(pn_array *a);
pn_array *pn_square(pn_array *a);
pn_array *pn_reciprocal(pn_array *a);
pn_array *pn_exp(pn_array *a);
pn_array *pn_expm1(pn_array *a);
pn_array *pn_log(pn_array *a);
pn_array *pn_log1p(pn_array *a);
pn_array *pn_log2(pn_array *a);
pn_array *pn_log10(pn_array *a);
pn_array *pn_sin(pn_array *a);
pn_array *pn_cos(pn_array *a);
pn_array *pn_tan(pn_array *a);
pn_array *pn_arcsin(pn_array *a);
pn_array *pn_arccos(pn_array *a);
pn_array *pn_arctan(pn_array *a);
pn_array *pn_sinh(pn_array *a);
pn_array *pn_cosh(pn_array *a);
pn_array *pn_tanh(pn_array *a);
pn_array *pn_arcsinh(pn_array *a);
pn_array *pn_arccosh(pn_array *a);
pn_array *pn_arctanh(pn_array *a);
pn_array *pn_floor(pn_array *a);
pn_array *pn_ceil(pn_array *a);
/* Rounds half to even at `decimals` decimal places; complex64: each part. */
pn_array *pn_round(pn_array *a, int decimals);
pn_array *pn_sigmoid(pn_array *a);
pn_array *pn_erf(pn_array *a);
pn_array *pn_erfinv(pn_array *a);
pn_array *pn_logical_not(pn_array *a);
pn_array *pn_bitwise_invert(pn_array *a);
pn_array *pn_isnan(pn_array *a);
pn_array *pn_isinf(pn_array *a);
pn_array *pn_isfinite(pn_array *a);
pn_array *pn_isposinf(pn_array *a);
pn_array *pn_isneginf(pn_array *a);
pn_array *pn_conjugate(pn_array *a);
pn_array *pn_real(pn_array *a);
pn_array *pn_imag(pn_array *a);
pn_array *pn_degrees(pn_array *a);
pn_array *pn_radians(pn_array *a);
/* The same values, through which no gradient flows. */
pn_array *pn_stop_gradient(pn_array *a);

/* Binary, broadcasting, with MLX's type promotion. */
pn_array *pn_add(pn_array *a, pn_array *b);
pn_array *pn_subtract(pn_array *a, pn_array *b);
pn_array *pn_multiply(pn_array *a, pn_array *b);
pn_array *pn_divide(pn_array *a, pn_array *b);
pn_array *pn_floor_divide(pn_array *a, pn_array *b);
pn_array *pn_remainder(pn_array *a, pn_array *b);
/* (a // b, a % b) into out[0], out[1]. Returns 0 or -1. */
int pn_divmod(pn_array *a, pn_array *b, pn_array **out);
pn_array *pn_power(pn_array *a, pn_array *b);
pn_array *pn_maximum(pn_array *a, pn_array *b);
pn_array *pn_minimum(pn_array *a, pn_array *b);
pn_array *pn_arctan2(pn_array *a, pn_array *b);
pn_array *pn_logaddexp(pn_array *a, pn_array *b);
pn_array *pn_equal(pn_array *a, pn_array *b);
pn_array *pn_not_equal(pn_array *a, pn_array *b);
pn_array *pn_less(pn_array *a, pn_array *b);
pn_array *pn_less_equal(pn_array *a, pn_array *b);
pn_array *pn_greater(pn_array *a, pn_array *b);
pn_array *pn_greater_equal(pn_array *a, pn_array *b);
pn_array *pn_logical_and(pn_array *a, pn_array *b);
pn_array *pn_logical_or(pn_array *a, pn_array *b);
pn_array *pn_bitwise_and(pn_array *a, pn_array *b);
pn_array *pn_bitwise_or(pn_array *a, pn_array *b);
pn_array *pn_bitwise_xor(pn_array *a, pn_array *b);
pn_array *pn_left_shift(pn_array *a, pn_array *b);
pn_array *pn_right_shift(pn_array *a, pn_array *b);

/* cond ? x : y, broadcasting all three. */
pn_array *pn_where(pn_array *cond, pn_array *x, pn_array *y);
/* Clips to [a_min, a_max]; either bound may be NULL (not both). */
pn_array *pn_clip(pn_array *a, pn_array *a_min, pn_array *a_max);
/* Replaces NaN by nan, +inf by posinf, -inf by neginf (NULL bound pointers pick the
 * dtype's largest / lowest finite values, as MLX). */
pn_array *pn_nan_to_num(pn_array *a, double nan, const double *posinf, const double *neginf);
pn_array *pn_isclose(pn_array *a, pn_array *b, double rtol, double atol, bool equal_nan);
/* Scalar bool arrays. */
pn_array *pn_allclose(pn_array *a, pn_array *b, double rtol, double atol, bool equal_nan);
pn_array *pn_array_equal(pn_array *a, pn_array *b, bool equal_nan);

/* ───────────────────────────── reductions and scans ───────────────────────────── */

#define PN_ALL_AXES (-2147483647 - 1)

pn_array *pn_sum(pn_array *a, const int *axes, int naxes, bool keepdims);
pn_array *pn_prod(pn_array *a, const int *axes, int naxes, bool keepdims);
pn_array *pn_max(pn_array *a, const int *axes, int naxes, bool keepdims);
pn_array *pn_min(pn_array *a, const int *axes, int naxes, bool keepdims);
pn_array *pn_mean(pn_array *a, const int *axes, int naxes, bool keepdims);
pn_array *pn_var(pn_array *a, const int *axes, int naxes, bool keepdims, int ddof);
pn_array *pn_std(pn_array *a, const int *axes, int naxes, bool keepdims, int ddof);
pn_array *pn_all(pn_array *a, const int *axes, int naxes, bool keepdims);
pn_array *pn_any(pn_array *a, const int *axes, int naxes, bool keepdims);
pn_array *pn_logsumexp(pn_array *a, const int *axes, int naxes, bool keepdims);
/* Index of the first extreme along axis (PN_ALL_AXES: of the flattened array); uint32. */
pn_array *pn_argmax(pn_array *a, int axis, bool keepdims);
pn_array *pn_argmin(pn_array *a, int axis, bool keepdims);
/* precise: accumulate in float32 for half types. */
pn_array *pn_softmax(pn_array *a, const int *axes, int naxes, bool precise);
pn_array *pn_log_softmax(pn_array *a, const int *axes, int naxes);
/* Scans along axis (PN_ALL_AXES: flattened); reverse scans from the end; inclusive=false
 * shifts by one (the first element is the op's identity). */
pn_array *pn_cumsum(pn_array *a, int axis, bool reverse, bool inclusive);
pn_array *pn_cumprod(pn_array *a, int axis, bool reverse, bool inclusive);
pn_array *pn_cummax(pn_array *a, int axis, bool reverse, bool inclusive);
pn_array *pn_cummin(pn_array *a, int axis, bool reverse, bool inclusive);
pn_array *pn_logcumsumexp(pn_array *a, int axis, bool reverse, bool inclusive);

/* ───────────────────────────── shapes ───────────────────────────── */

/* One extent may be -1 (inferred). A view when possible. */
pn_array *pn_reshape(pn_array *a, const int64_t *shape, int ndim);
pn_array *pn_flatten(pn_array *a, int start_axis, int end_axis);
pn_array *pn_unflatten(pn_array *a, int axis, const int64_t *shape, int ndim);
/* axes == NULL removes every size-1 axis. */
pn_array *pn_squeeze(pn_array *a, const int *axes, int naxes);
pn_array *pn_expand_dims(pn_array *a, const int *axes, int naxes);
/* axes == NULL reverses the axes. */
pn_array *pn_transpose(pn_array *a, const int *axes, int naxes);
pn_array *pn_swapaxes(pn_array *a, int axis1, int axis2);
pn_array *pn_moveaxis(pn_array *a, int source, int destination);
pn_array *pn_broadcast_to(pn_array *a, const int64_t *shape, int ndim);
/* Broadcasts the n inputs against each other into out[0..n-1]. Returns 0 or -1. */
int pn_broadcast_arrays(pn_array *const *arrays, int n, pn_array **out);
pn_array *pn_concatenate(pn_array *const *arrays, int n, int axis);
pn_array *pn_stack(pn_array *const *arrays, int n, int axis);
/* Splits at the nindices ascending indices along axis into out[0..nindices]. */
int pn_split(pn_array *a, const int64_t *indices, int nindices, int axis, pn_array **out);
/* Splits into nsections equal parts along axis (an error when they are not equal). */
int pn_split_sections(pn_array *a, int nsections, int axis, pn_array **out);
pn_array *pn_tile(pn_array *a, const int64_t *reps, int nreps);
/* Repeats each element `repeats` times along axis (PN_ALL_AXES: flattened first). */
pn_array *pn_repeat(pn_array *a, int64_t repeats, int axis);
typedef enum pn_pad_mode { PN_PAD_CONSTANT = 0, PN_PAD_EDGE } pn_pad_mode;
/* Pads axes[i] with low[i] before and high[i] after (axes == NULL: the first naxes axes).
 * value (a scalar array, NULL = 0) fills constant padding. */
pn_array *pn_pad(pn_array *a, const int *axes, const int64_t *low, const int64_t *high,
                 int naxes, pn_array *value, pn_pad_mode mode);
/* Reverses the order along the given axes (NULL: all). */
pn_array *pn_flip(pn_array *a, const int *axes, int naxes);
/* Rolls by shift[i] along axes[i]; axes == NULL rolls the flattened array by the sum of the
 * naxes shifts (numpy's rule for a tuple of shifts without axes). */
pn_array *pn_roll(pn_array *a, const int64_t *shift, const int *axes, int naxes);
/* a[start:stop:step] per axis (ndim entries each; steps may be negative; bounds are clamped
 * like Python's). strides == NULL means 1. */
pn_array *pn_slice(pn_array *a, const int64_t *start, const int64_t *stop, const int64_t *strides,
                   int n);
/* A copy of src with src[start:stop:step] = update (broadcast). */
pn_array *pn_slice_update(pn_array *src, pn_array *update, const int64_t *start,
                          const int64_t *stop, const int64_t *strides, int n);
/* A view with the given shape and element strides from element offset of a's data. */
pn_array *pn_as_strided(pn_array *a, const int64_t *shape, const int64_t *strides, int ndim,
                        int64_t offset);
/* Coordinate grids; indexing "xy" (Cartesian) or "ij" (matrix). Returns 0 or -1. */
int pn_meshgrid(pn_array *const *arrays, int n, bool sparse, const char *indexing,
                pn_array **out);

/* ───────────────────────────── indexing ───────────────────────────── */

/* Elements of a at integer indices along axis (PN_ALL_AXES: of the flattened array).
 * Negative indices count from the end. Indexing never reads or writes out of bounds:
 * out-of-range indices are clamped by gathers, and their updates dropped by scatters.
 * put_along_axis into an empty a accepts indices of any dtype (MLX never evaluates it). */
pn_array *pn_take(pn_array *a, pn_array *indices, int axis);
pn_array *pn_take_along_axis(pn_array *a, pn_array *indices, int axis);
pn_array *pn_put_along_axis(pn_array *a, pn_array *indices, pn_array *values, int axis);
/* MLX's a[mask] = src (masked_scatter): mask (bool) has the shape of a's first k axes and
 * selects slices of a's remaining axes; src of at most that many dimensions is one value for
 * every selected slice (broadcast to the slice), src with one dimension more is a sequence of
 * slices (rows broadcast to the slice) taken in order by the selected slices (when there are
 * fewer rows than selections the last row repeats; MLX's CPU reports that at evaluation).
 * Result: a's dtype and shape. Nothing is evaluated. Errors: a non-boolean mask, a mask that
 * is not a's leading shape, src with too many dimensions. */
pn_array *pn_masked_scatter(pn_array *a, pn_array *mask, pn_array *src);
/* MLX's gather: nidx index arrays (broadcast together) index axes[0..nidx-1] of a, each
 * gathered item is a slice of slice_sizes (ndim(a) entries). */
pn_array *pn_gather(pn_array *a, pn_array *const *indices, int nidx, const int *axes,
                    const int64_t *slice_sizes);
typedef enum pn_scatter_mode {
    PN_SCATTER_SET = 0,
    PN_SCATTER_ADD,
    PN_SCATTER_PROD,
    PN_SCATTER_MAX,
    PN_SCATTER_MIN
} pn_scatter_mode;
/* MLX's scatter: a copy of a where the slices of updates land at the given indices along
 * axes, combined by mode. updates has shape broadcast(indices) + slice shape. */
pn_array *pn_scatter(pn_array *a, pn_array *const *indices, int nidx, pn_array *updates,
                     const int *axes, pn_scatter_mode mode);

/* ───────────────────────────── linear algebra ───────────────────────────── */

/* numpy/MLX matmul: batched and broadcast; 1-d operands are vectors. */
pn_array *pn_matmul(pn_array *a, pn_array *b);
/* alpha * (a @ b) + beta * c. */
pn_array *pn_addmm(pn_array *c, pn_array *a, pn_array *b, double alpha, double beta);
pn_array *pn_outer(pn_array *a, pn_array *b);
pn_array *pn_inner(pn_array *a, pn_array *b);
/* Contracts axes_a[i] of a with axes_b[i] of b. */
pn_array *pn_tensordot(pn_array *a, pn_array *b, const int *axes_a, const int *axes_b, int n);
/* Contracts the last n axes of a with the first n of b. */
pn_array *pn_tensordot_n(pn_array *a, pn_array *b, int n);
/* numpy's einsum ("ij,jk->ik"), over n operands, contracted in pn_einsum_path's order. */
pn_array *pn_einsum(const char *subscripts, pn_array *const *operands, int n);
/* The contraction path of pn_einsum(subscripts, operands, n), as mlx.core.einsum_path gives
 * it (MLX's greedy choice, numpy's einsum_path(optimize="greedy")): for each step in order,
 * path receives the count of operands it contracts, then their positions (ascending) in the
 * list of operands left, each step's result joining that list at its end. At most cap ints
 * are written (4 * n always suffice). info (may be NULL) receives the naive and the path's
 * FLOP counts and the naive and the path's scalings (letters in the largest step). Returns
 * the number of steps, or -1 with an error (invalid subscripts or operands, cap too small). */
int pn_einsum_path(const char *subscripts, pn_array *const *operands, int n, int *path, int cap,
                   uint64_t info[4]);
pn_array *pn_trace(pn_array *a, int offset, int axis1, int axis2);
/* 1-d: a matrix with a on diagonal k; 2-d: diagonal k as 1-d. */
pn_array *pn_diag(pn_array *a, int k);
pn_array *pn_diagonal(pn_array *a, int offset, int axis1, int axis2);

/* Matmul variants (mlx.core's, src/ops/matmul_variants.c): compositions of take, where,
 * repeat and batched matmul, so they run on every backend and differentiate with respect to a
 * and b. a and b promote to a real floating dtype (integer results are an error); a 1-d a is a
 * row (1, K), a 1-d b a column (K, 1), and that axis is removed from the result. */
/* a (A..., M, K), b (B..., K, N): out[i...] = a_flat[lhs[i...]] @ b_flat[rhs[i...]] where
 * a_flat (prod(A), M, K) and b_flat flatten the batch axes, the integer index arrays broadcast
 * together (NULL: arange over the batch shaped as A..., resp. B...), shape broadcast(lhs, rhs)
 * + (M, N). Indices out of range are clamped, negative ones count from the end. sorted_indices
 * is a performance hint. */
pn_array *pn_gather_mm(pn_array *a, pn_array *b, pn_array *lhs_indices, pn_array *rhs_indices,
                       bool sorted_indices);
/* a @ b with blocks of block_size x block_size masked: mask_lhs (..., ceil(M/bs), ceil(K/bs))
 * masks a's blocks, mask_rhs (..., ceil(K/bs), ceil(N/bs)) b's, mask_out (..., ceil(M/bs),
 * ceil(N/bs)) the result's (each may be NULL; extents may be 1 to broadcast). A bool mask keeps
 * the blocks where it is true (others are 0); a floating mask scales each block by its value.
 * MLX's GPU takes block_size 32 or 64 only; any positive size is accepted here. */
pn_array *pn_block_masked_mm(pn_array *a, pn_array *b, int block_size, pn_array *mask_out,
                             pn_array *mask_lhs, pn_array *mask_rhs);
/* For 2-d a (M, K), b (K, N) and integer segments (..., 2) of [start, end) offsets into K:
 * out[s...] = a[:, start:end] @ b[start:end, :], shape segments.shape[:-1] + (M, N) (empty or
 * reversed segments give zeros). */
pn_array *pn_segmented_mm(pn_array *a, pn_array *b, pn_array *segments);

/* Quantization (mlx.core.quantize, dequantize, quantized_matmul, gather_qmm;
 * src/ops/quantized.c) in MLX's modes (mode NULL or "affine", "mxfp4", "mxfp8", "nvfp4").
 * "affine": each row of the last axis is cut into groups of group_size (32, 64, 128; 0: 64)
 * consecutive values; a group has a scale s and a bias b and stores each value as q in
 * [0, 2^bits) (bits 1-6 or 8; 0: 4), w ~ s q + b. The q of a row are packed little-endian into
 * its uint32 words: value i occupies bits [i bits, (i + 1) bits) of the row's bit stream (3-, 5-
 * and 6-bit values may straddle two words). The floating-point modes store fp4 e2m1 ("mxfp4",
 * "nvfp4"; bits 4) or fp8 e4m3 ("mxfp8"; bits 8) codes packed the same way, one uint8 scale
 * per group (e8m0, a power of two 2^(s - 127), for groups of 32 in the "mx" modes; e4m3 for
 * groups of 16 in "nvfp4") and no biases; their group size and bits are fixed (0: them).
 * Bit-exact with MLX 0.32.4's CPU quantize and dequantize. Floating dtypes are float32, float16,
 * bfloat16 and float64 (which MLX accepts when building the graph but fails to evaluate). */
/* Quantizes w (..., K), at least 2-d, floating, K divisible by group_size:
 * out[0] = w_q (..., K bits / 32) uint32, out[1] = scales (..., K / group_size) (w's dtype for
 * affine, uint8 otherwise) and, affine only, out[2] = biases (w's dtype; NULL otherwise) (owned
 * like op results). Affine, per group (float arithmetic, rint rounding half to even, eps =
 * 1e-7): the end of larger magnitude, edge, lands exactly on a level:
 * s = max((max - min) / (2^bits - 1), eps) signed towards it, q0 = rint(edge / s), and if
 * q0 != 0, s = edge / q0 and b = edge (else b = 0); q = clip(rint((w - b) / s), 0, 2^bits - 1).
 * bits 1: s = max(max - min, eps), b = min. A constant group gets s = -1e-7 and b = its value
 * (0 for zeros). The fp modes: see pnK_fp_quantize_group (src/backend/cpu/quant_codec.h).
 * global_scale (NULL: none): "nvfp4" only, a float32 scalar (the tensor's amax): block scales
 * are e4m3(amax_g / 6 * 2688 / global_scale). Not differentiable. Returns 0, or -1 with an
 * error (out[] NULL). */
int pn_quantize(pn_array *w, int group_size, int bits, const char *mode, pn_array *global_scale,
                pn_array **out);
/* The matrix (..., K) that w_q (..., K bits / 32, uint32) encodes with scales (and biases)
 * (..., K / group_size). Affine: scales and biases of the same shape, floating, required;
 * T(T(s q) + b) computed in T = the promoted dtype of scales and biases, then cast to dtype
 * (PN_NUM_DTYPES: T); differentiable with respect to scales and biases (not w_q). fp modes:
 * biases NULL, uint8 scales; T(T(v) T(s)) in T = dtype (PN_NUM_DTYPES: bfloat16, float32 with
 * a global scale, which multiplies s by global_scale / 2688, whatever dtype says: as MLX);
 * not differentiable. */
pn_array *pn_dequantize(pn_array *w, pn_array *scales, pn_array *biases, int group_size,
                        int bits, const char *mode, pn_array *global_scale, pn_dtype dtype);
/* x @ W^T (transpose) or x @ W with W = dequantize(w, scales, biases): W is (..., N, K) for
 * transpose, (..., K, N) otherwise, w_q, scales and biases sharing its batch axes. x (..., M,
 * K) or a 1-d (K,) (the row axis is then dropped); batch axes broadcast as matmul's. The
 * result's dtype is the promotion of x, scales and biases (affine) or x's (fp modes), which
 * must be floating; products accumulate in float32 (float64 for float64). Differentiable with
 * respect to x and (affine) scales and biases; the gradient with respect to w_q is an error. */
pn_array *pn_quantized_matmul(pn_array *x, pn_array *w, pn_array *scales, pn_array *biases,
                              bool transpose, int group_size, int bits, const char *mode);
/* quantized_matmul with matrix-level gather (mlx.core.gather_qmm): lhs_indices and
 * rhs_indices (integer, NULL: every batch item in order) index the flattened batch axes of x
 * (..., M, K), at least 2-d, and of w_q, scales and biases; they broadcast together to shape I
 * and the result is (I..., M, N) with item i = x[lhs[i]] @ W[rhs[i]] (transposed as above).
 * Both NULL: quantized_matmul. Composed of take and quantized_matmul (differentiable as they
 * are); sorted_indices is a hint and ignored. */
pn_array *pn_gather_qmm(pn_array *x, pn_array *w, pn_array *scales, pn_array *biases,
                        pn_array *lhs_indices, pn_array *rhs_indices, bool transpose,
                        int group_size, int bits, const char *mode, bool sorted_indices);
/* qqmm / gather_qqmm (src/ops/quantized.c): mlx.core.qqmm and gather_qqmm, modes "nvfp4" (NULL:
 * it), "mxfp8", "mxfp4" ("affine" is refused: MLX takes no biases there). x (..., M, K) or (K,),
 * float32/float16/bfloat16, is rounded through the mode's format (x̂ = dequantize(quantize(x))
 * with scales and codes computed in float32, cast back to x's dtype, as MLX's CPU does); w is
 * either quantized (uint32 (..., N, K bits / 32) with uint8 scales, required) or floating
 * (..., N, K) (scales NULL), then quantized here in its own dtype. Result: x̂ @ W^T in x's
 * dtype, batch axes broadcast as matmul's. global_scale_x / _w: nvfp4 only, both or neither
 * (then W is dequantized with its global scale and multiplied in float32). Gradients (floating
 * w only, MLX's rule): dx = qqmm(g, w^T), dw = qqmm(g^T, x^T) (x's rows folded for a 2-d w),
 * so rows M must be a multiple of the group size for dw; quantized w, scales: none. */
pn_array *pn_qqmm(pn_array *x, pn_array *w, pn_array *scales, int group_size, int bits,
                  const char *mode, pn_array *global_scale_x, pn_array *global_scale_w);
/* qqmm with matrix-level gather: lhs_indices / rhs_indices index the flattened batch axes of x
 * (at least 2-d) and of w (and scales), as pn_gather_qmm's; both NULL: pn_qqmm. */
pn_array *pn_gather_qqmm(pn_array *x, pn_array *w, pn_array *scales, pn_array *lhs_indices,
                         pn_array *rhs_indices, int group_size, int bits, const char *mode,
                         pn_array *global_scale_x, pn_array *global_scale_w,
                         bool sorted_indices);

/* ─────────────── compositions of the ops above (src/ops/compose.c) ─────────────── */
/* mlx.core functions built only from existing ops: they run on every backend and their
 * derivatives come from their parts. */

/* Kronecker product: the inputs padded with leading 1s to a common rank r; the result has
 * extents a_i * b_i, element [i*b + j] = a[i] * b[j] per axis. 0-d inputs: their product.
 * An empty input is an error (MLX). */
pn_array *pn_kron(pn_array *a, pn_array *b);
/* The n-th discrete difference along axis (a[1:] - a[:-1], n times; bool: a[1:] != a[:-1]).
 * n >= 0; a must have at least one dimension. */
pn_array *pn_diff(pn_array *a, int n, int axis);
/* Median over axes (NULL: all) from a sort: the middle element, or the mean of the two middle
 * ones. Floating inputs keep their dtype, others give float32; an empty reduction is NaN. */
pn_array *pn_median(pn_array *a, const int *axes, int naxes, bool keepdims);
/* Number of non-zero elements over axes (NULL: all), int32. */
pn_array *pn_count_nonzero(pn_array *a, const int *axes, int naxes, bool keepdims);
/* Insertion points of values in the ascending 1-d sorted_sequence (uint32, values' shape):
 * the count of elements < value (right: <= value). */
pn_array *pn_searchsorted(pn_array *sorted_sequence, pn_array *values, bool right);
/* sum(conj(a) * b) along axis of the broadcast inputs. */
pn_array *pn_vecdot(pn_array *a, pn_array *b, int axis);
/* Walsh-Hadamard transform of the last axis, times *scale (NULL: 1/sqrt(n)): x @ H(n), H(n) in
 * Sylvester's order for n = 2^k and MLX's kron(H(m), H(2^k)) for n = m * 2^k, m 12, 20 or 28
 * (other sizes: PN_ERR_INVALID_ARGUMENT). Non-floating inputs give float32. */
pn_array *pn_hadamard_transform(pn_array *a, const double *scale);
/* mlx.core.slice: the block of extents slice_size (nsize == ndim(a) entries) of a, starting
 * at the integer array start (naxes elements) along axes and at 0 along the other axes. */
pn_array *pn_slice_dynamic(pn_array *a, pn_array *start, const int *axes, int naxes,
                           const int64_t *slice_size, int nsize);
/* mlx.core.slice_update: a copy of a with update (cast to a's dtype, leading 1s added up to
 * ndim(a)) written at the integer array start (naxes elements) along axes, 0 elsewhere. */
pn_array *pn_slice_update_dynamic(pn_array *a, pn_array *update, pn_array *start,
                                  const int *axes, int naxes);
/* numpy's (and mlx.core's) windows of m points, float32: bartlett 1 - |2n/(m-1) - 1|, and the
 * cosine sums a0 - a1 cos(2 pi n/(m-1)) + a2 cos(4 pi n/(m-1)) of blackman (0.42, 0.5, 0.08),
 * hamming (0.54, 0.46) and hanning (0.5, 0.5). m == 1 gives [1]; m <= 0 an empty array. */
typedef enum pn_window_kind {
    PN_WINDOW_BARTLETT = 0,
    PN_WINDOW_BLACKMAN,
    PN_WINDOW_HAMMING,
    PN_WINDOW_HANNING
} pn_window_kind;
pn_array *pn_window(pn_window_kind kind, int64_t m);
/* a's bytes reinterpreted as dtype; the last axis scales by itemsize ratio (must divide; a
 * 0-d array only between types of one size). Evaluates a: a new array, not traceable by
 * grad/vjp/jvp/vmap (an error inside them). */
pn_array *pn_view(pn_array *a, pn_dtype dtype);

/* mlx.core.linalg over (batches of) floating matrices in the last two axes, as elimination
 * loops of the ops above (n steps for n×n). Failures of the math (a singular or indefinite
 * matrix) show as inf/NaN in the result, not as errors. */
/* L with a = L L^T (upper: U with a = U^T U) from the lower triangle of a. */
pn_array *pn_linalg_cholesky(pn_array *a, bool upper);
/* x with a x = b for triangular a (only its lower, or upper, triangle is read); b (n,) or
 * (..., n, k), batch dims broadcast; dtypes promote to a floating type. */
pn_array *pn_linalg_solve_triangular(pn_array *a, pn_array *b, bool upper);
/* The inverse of a triangular matrix. */
pn_array *pn_linalg_tri_inv(pn_array *a, bool upper);
/* The inverse of L L^T (upper: U^T U) from its Cholesky factor. */
pn_array *pn_linalg_cholesky_inv(pn_array *l, bool upper);
/* The inverse of a (Gauss-Jordan with partial pivoting). */
pn_array *pn_linalg_inv(pn_array *a);
/* x with a x = b; b (n,) or (..., n, k), batch dims broadcast. */
pn_array *pn_linalg_solve(pn_array *a, pn_array *b);
/* Reduced QR of a (..., m, n) float32/float64 (others are an error, as in MLX): q (..., m, k)
 * with orthonormal columns, r (..., k, n) upper triangular, k = min(m, n), signs as LAPACK's
 * geqrf/orgqr (the QRF primitive of src/ops/linalg_decomp.c; cuSOLVER on the GPU). vjp and jvp
 * (beyond MLX, which has neither) need the leading k x k block of r invertible. Returns 0 or
 * -1. */
int pn_linalg_qr(pn_array *a, pn_array **q, pn_array **r);
/* Cross product of 3-vectors (2-vectors get a zero third component) along axis. */
pn_array *pn_linalg_cross(pn_array *a, pn_array *b, int axis);

/* ── Linear algebra: decompositions (src/ops/linalg_decomp.c) ──
 * mlx.core.linalg's decompositions as primitives: LAPACK on the CPU, cuSOLVER on the GPU.
 * Inputs are float32 or float64 (svd, eigh, eigvalsh, eig and eigvals also complex64; others
 * are an error, as in MLX) with at least two dimensions; leading axes are a batch. A computation that
 * does not converge fails at evaluation with PN_ERR_BACKEND. Outputs are owned by the current
 * scope; on error every output is NULL and the function returns -1 (or NULL). */
/* Singular value decomposition a = U diag(S) Vt of a (..., m, n), k = min(m, n): with
 * compute_uv, out[0] = U (..., m, m), out[1] = S (..., k) descending, out[2] = Vt (..., n, n);
 * without, out[0] = S only. Differentiable (for S and the first k columns of U and rows of
 * Vt; distinct nonzero singular values). complex64 a (through the real embedding [[X, -Y],
 * [Y, X]]): S float32, U and Vt complex64 (a = U diag(S) Vt), singular vectors for square a
 * only, distinct singular values assumed; not differentiable. Returns 0 or -1. */
int pn_linalg_svd(pn_array *a, bool compute_uv, pn_array **out);
/* Eigenvalues w (..., n) ascending and orthonormal eigenvectors v (..., n, n) (columns) of the
 * symmetric a (..., n, n), reading only its lower (uplo 'L') or upper ('U') triangle.
 * Differentiable (the gradient is that with respect to a symmetric a). complex64 a is
 * Hermitian (through the real embedding [[X, -Y], [Y, X]]): w float32, v complex64, distinct
 * eigenvalues assumed. Returns 0 or -1. */
int pn_linalg_eigh(pn_array *a, char uplo, pn_array **w, pn_array **v);
/* The eigenvalues of pn_linalg_eigh alone. */
pn_array *pn_linalg_eigvalsh(pn_array *a, char uplo);
/* Eigenvalues w (..., n) and unit-norm right eigenvectors v (..., n, n) (columns), both
 * complex64, of the general square a: a v = v diag(w). Not differentiable. Returns 0 or -1. */
int pn_linalg_eig(pn_array *a, pn_array **w, pn_array **v);
/* The eigenvalues of pn_linalg_eig alone (complex64). */
pn_array *pn_linalg_eigvals(pn_array *a);
/* LU factorization with partial pivoting of a (..., m, n), k = min(m, n): p (..., m) uint32
 * row indices, l (..., m, k) unit lower triangular, u (..., k, n) upper triangular with
 * a = l[p] @ u (row i of a is row p[i] of l @ u). Differentiable for square a. 0 or -1. */
int pn_linalg_lu(pn_array *a, pn_array **p, pn_array **l, pn_array **u);
/* The packed factorization: lu (..., m, n) holding l below the diagonal (unit diagonal
 * implied) and u on and above it, and pivots (..., k) uint32: row i was swapped with row
 * pivots[i] at step i (LAPACK's getrf, 0-based). Returns 0 or -1. */
int pn_linalg_lu_factor(pn_array *a, pn_array **lu, pn_array **pivots);
/* Moore-Penrose pseudo-inverse (..., n, m) of a (..., m, n) from its SVD; singular values at
 * or below 10 max(m, n) eps max(S) count as zero (MLX's cutoff). Differentiable. */
pn_array *pn_linalg_pinv(pn_array *a);

/* ── can_cast (src/core/dtype.c), fp8 (src/ops/fp8.c), unique (src/ops/sort.c), det, slogdet
 * (src/ops/linalg_solve.c), cross_entropy (src/nn/losses.c) ──
 * Except to_fp8 (one primitive), compositions of existing ops: they run on every backend, and differentiate and vmap through
 * their parts. Results are owned by the current scope; errors (PN_ERR_INVALID_ARGUMENT, with
 * MLX's messages) give NULL or -1 with every output NULL. */
/* Whether promoting from with to gives to (MLX's can_cast). False for an invalid dtype. */
bool pn_can_cast(pn_dtype from, pn_dtype to);
/* x (float16, bfloat16, float32 or float64; float64 is rounded to float32 first) as fp8 e4m3
 * codes, uint8 of x's shape, bit for bit as MLX: round to nearest even, |x| > 448, inf and NaN
 * saturate to 448 (0x7e) with x's sign, subnormals kept, -0.0 is 0x80. */
pn_array *pn_to_fp8(pn_array *x);
/* The uint8 e4m3 codes x as dtype (a real floating type): 0x7f and 0xff are NaN, 0x7e is 448. */
pn_array *pn_from_fp8(pn_array *x, pn_dtype dtype);
/* The sorted unique elements of the flattened a, at a static size (size >= 0): out[0] values
 * (size,) of a's dtype, padded with fill_value (one element, cast to a's dtype; NULL: the
 * smallest element, required when a is empty and size > 0) or cut to the size smallest ones;
 * out[1] index (size,) uint32: the first position in flattened a of each value (padding:
 * index[0]); out[2] inverse (shape of a) uint32: the entry of each element, clamped to size - 1
 * (0 for size 0); out[3] counts (size,) int32, 0 past the unique elements. Equal elements
 * (-0.0 and 0.0) are one entry, each NaN its own. Differentiable through the values (the
 * gradient goes to the first occurrences). Returns 0 or -1. */
int pn_unique(pn_array *a, int64_t size, pn_array *fill_value, pn_array **out);
/* The determinants (...) of the square matrices a (..., n, n) from the LU factorization (0 for
 * a singular matrix, 1 for n = 0). Float inputs keep their dtype (float16 and bfloat16 are
 * computed in float32), integer and bool ones give float32; complex is an error.
 * Differentiable (through the LU factorization, for nonsingular a). */
pn_array *pn_linalg_det(pn_array *a);
/* sign (...) in {-1, 0, 1} and logabsdet (...) = log|det a| of the square matrices a
 * (..., n, n), dtypes as pn_linalg_det; singular: sign 0, logabsdet -inf. Differentiable
 * (logabsdet) for nonsingular a. Returns 0 or -1. */
int pn_linalg_slogdet(pn_array *a, pn_array **sign, pn_array **logabsdet);
/* MLX's fast.cross_entropy: logsumexp(logits, -1) - logits[..., targets], float32 (...) with
 * targets' shape (logits (..., C) real floating, non-empty, accumulated in float32 or float64
 * for float64; targets (...) integer class indices in [0, C)). Differentiable in logits. */
pn_array *pn_fast_cross_entropy(pn_array *logits, pn_array *targets);

/* ── FFT: mlx.core.fft (src/ops/fft.c) ──
 * Discrete Fourier transforms over one or more axes: one FFT primitive (a mixed-radix
 * Stockham / Bluestein kernel on the CPU, cuFFT on the GPU), differentiable (vjp, jvp) and
 * batchable. Results are complex64 (float32 for the irfft family); other inputs are cast
 * first (there is no complex128: float64 input gives complex64 results); rfft* casts complex
 * input to float32 (dropping the imaginary part), as MLX. Forward transforms are unscaled,
 * inverse ones scaled by 1/n ("backward" normalization; the _norm variants take norm=). Each
 * transformed axis is truncated or zero-padded to its requested size first. Errors
 * (PN_ERR_INVALID_ARGUMENT, NULL): a 0-d input, an axis out of range, a duplicated axis, a
 * size <= 0. Results are owned by the current scope.
 * n-dimensional: s holds naxes sizes (NULL: a's sizes along axes; for irfftn 2 (m - 1) on the
 * last axis); axes holds naxes axes (NULL: the last naxes axes when s is given, else every
 * axis, naxes ignored). For rfftn / irfftn the last axis in axes is the real one: rfftn gives
 * s[-1]/2+1 values there, irfftn takes s[-1]/2+1 values and gives s[-1]. */
pn_array *pn_fft_fftn(pn_array *a, const int64_t *s, const int *axes, int naxes);
pn_array *pn_fft_ifftn(pn_array *a, const int64_t *s, const int *axes, int naxes);
pn_array *pn_fft_rfftn(pn_array *a, const int64_t *s, const int *axes, int naxes);
pn_array *pn_fft_irfftn(pn_array *a, const int64_t *s, const int *axes, int naxes);
/* As the four above with numpy's / MLX's norm: NULL or "backward" (forward unscaled, inverse
 * 1/N), "ortho" (1/sqrt(N) both ways), "forward" (forward 1/N, inverse unscaled), N the
 * product of the transform sizes (s, or the defaults above); another name is
 * PN_ERR_INVALID_ARGUMENT. */
pn_array *pn_fft_fftn_norm(pn_array *a, const int64_t *s, const int *axes, int naxes,
                           const char *norm);
pn_array *pn_fft_ifftn_norm(pn_array *a, const int64_t *s, const int *axes, int naxes,
                            const char *norm);
pn_array *pn_fft_rfftn_norm(pn_array *a, const int64_t *s, const int *axes, int naxes,
                            const char *norm);
pn_array *pn_fft_irfftn_norm(pn_array *a, const int64_t *s, const int *axes, int naxes,
                             const char *norm);
/* Two-dimensional: s NULL or 2 sizes; axes NULL means {-2, -1}. */
pn_array *pn_fft_fft2(pn_array *a, const int64_t *s, const int *axes);
pn_array *pn_fft_ifft2(pn_array *a, const int64_t *s, const int *axes);
pn_array *pn_fft_rfft2(pn_array *a, const int64_t *s, const int *axes);
pn_array *pn_fft_irfft2(pn_array *a, const int64_t *s, const int *axes);
/* One-dimensional along axis; n is the transform size (0: the default, a's size along axis,
 * or 2 (m - 1) for irfft; negative sizes are an error). */
pn_array *pn_fft_fft(pn_array *a, int64_t n, int axis);
pn_array *pn_fft_ifft(pn_array *a, int64_t n, int axis);
pn_array *pn_fft_rfft(pn_array *a, int64_t n, int axis);
pn_array *pn_fft_irfft(pn_array *a, int64_t n, int axis);
/* Rolls each of the naxes axes (NULL: every axis) by n/2 (fftshift) or (n+1)/2 (ifftshift),
 * moving the zero frequency to the centre and back; a's dtype. An axis out of range is an
 * error; a 0-d array comes back unchanged. */
pn_array *pn_fft_fftshift(pn_array *a, const int *axes, int naxes);
pn_array *pn_fft_ifftshift(pn_array *a, const int *axes, int naxes);

/* ── fft helpers and short-time transforms (src/ops/spectral.c), gated
 * delta (src/nn/gated_delta.c), relu2 (src/nn/activations.c), distributed (src/distributed) ──
 * Results are owned by the current scope; bad arguments give PN_ERR_INVALID_ARGUMENT and
 * NULL (-1 for int results). PN_FFT_DEFAULT stands for an integer argument not given. */
#define PN_FFT_DEFAULT INT64_MIN
/* The sample frequencies of an n-point DFT with spacing d, float32: fftfreq gives n values
 * (0, 1, ..., -1) / (n d), rfftfreq the n/2+1 non-negative ones. n <= 0 or d == 0: error. */
pn_array *pn_fft_fftfreq(int64_t n, double d);
pn_array *pn_fft_rfftfreq(int64_t n, double d);
/* mlx.core.fft.stft: frames of n_fft samples hop_length apart (default n_fft / 4) along x's
 * last axis (padded by n_fft / 2 on both sides when center, pad_mode "reflect" (NULL),
 * "constant" or "edge"), times the window (1-d, at most n_fft, zero-padded to n_fft
 * centred; NULL: ones(win_length), win_length default n_fft), transformed: complex64
 * (..., n_freq, n_frames), n_freq = n_fft / 2 + 1 when onesided (1; -1: real inputs 1,
 * complex 0) else n_fft. norm NULL/"backward" (unscaled), "ortho" (1/sqrt(n_fft)), "forward"
 * (1/n_fft). Errors: x 0-d or empty, n_fft or hop <= 0, a bad window, too short a signal. */
pn_array *pn_fft_stft(pn_array *x, int64_t n_fft, int64_t hop_length, int64_t win_length,
                      pn_array *window, bool center, const char *pad_mode, const char *norm,
                      int onesided);
/* mlx.core.fft.istft: the inverse of pn_fft_stft for stft_matrix (..., n_freq, n_frames):
 * each frame inverse-transformed (irfft when onesided, 1 or -1; else the real part of ifft)
 * to n_fft samples (default 2 (n_freq - 1) onesided, n_freq otherwise), windowed, overlap-
 * added hop_length apart and divided by the overlap-added squared window (floored at 1e-8);
 * center drops n_fft / 2 samples at both ends; length (PN_FFT_DEFAULT: none) trims or
 * zero-pads the result to that many samples. float32 (..., n_samples). */
pn_array *pn_fft_istft(pn_array *stft_matrix, int64_t n_fft, int64_t hop_length,
                       int64_t win_length, pn_array *window, bool center, const char *norm,
                       int onesided, int64_t length);
/* mlx.core.fast.gated_delta_update: the gated delta rule over T steps. q, k (B, T, Hk, Dk),
 * v (B, T, Hv, Dv) with Hv a multiple of Hk (q, k repeated per group), gamma (B, T, Hv) or
 * (B, T, Hv, Dk) (decay, linear), beta (B, T, Hv), initial_state (B, Hv, Dv, Dk) or NULL
 * (zeros), mask (B, T) or NULL (a zero entry skips that step: state kept, output 0). Per step
 *   S = S * gamma_t;  S += ((v_t - S k_t) beta_t) k_t^T;  y_t = S q_t.
 * out[0]: y (B, T, Hv, Dv), q, k, v's promoted type (float32 for integers); out[1]: the final
 * state (B, Hv, Dv, Dk), float32 (float64 when an input is). Returns 0, or -1 with an error
 * (bad shapes, T == 0). A composition of ~10 ops per step. */
int pn_fast_gated_delta_update(pn_array *q, pn_array *k, pn_array *v, pn_array *gamma,
                               pn_array *beta, pn_array *initial_state, pn_array *mask,
                               pn_array **out);
/* mlx.nn.relu2: max(x, 0)^2, x's dtype. */
pn_array *pn_nn_relu2(pn_array *x);

/* ── user CUDA kernels: mlx.core.fast.cuda_kernel / precompiled_cuda_kernel (src/ops/custom_kernel.c,
 * compiled at run time by NVRTC: src/backend/cuda/custom_kernel.cu) ──
 * GPU only (a CPU stream is PN_ERR_INVALID_ARGUMENT, "Only supports the GPU", as MLX); on the
 * simulated GPU and without NVRTC the evaluation fails with PN_ERR_BACKEND. No derivatives. */
typedef enum { PN_KERNEL_ARG_INT, PN_KERNEL_ARG_BOOL, PN_KERNEL_ARG_DTYPE, PN_KERNEL_ARG_FLOAT } pn_kernel_arg_kind;
/* A template argument (int, bool or dtype, with its name) or a precompiled kernel's scalar
 * argument (int: passed as int32, bool, float: passed as float32; name unused). */
typedef struct pn_kernel_arg {
    const char *name;
    pn_kernel_arg_kind kind;
    int64_t i; /* INT, BOOL */
    double f;  /* FLOAT */
    pn_dtype dtype;
} pn_kernel_arg;
/* One launch: grid in threads (blocks = ceil(grid / threadgroup), as MLX), the outputs' dtypes
 * and shapes, the template arguments, an optional value every output starts from (else the
 * outputs start uninitialized), and verbose: print the generated source to stdout. */
typedef struct pn_kernel_launch {
    int grid[3], threadgroup[3];
    int nout;
    const pn_dtype *out_dtypes;
    const int64_t *const *out_shapes;
    const int *out_ndims;
    int ntemplate;
    const pn_kernel_arg *template_args;
    bool has_init_value;
    double init_value;
    bool verbose;
} pn_kernel_launch;
typedef struct pn_cuda_kernel pn_cuda_kernel;
/* A kernel from the body of a CUDA function: its signature is generated per call from the
 * inputs' dtypes (`const T* name`; then `Shape name_shape`, `Strides name_strides`,
 * `int name_ndim` when the body mentions them), the outputs (`T* name`) and the template
 * arguments (constexpr values, type aliases); header goes before it. Owned by the caller
 * (pn_cuda_kernel_free). NULL with an error for missing names or no output. */
pn_cuda_kernel *pn_fast_cuda_kernel(const char *name, int nin, const char *const *input_names, int nout,
                                    const char *const *output_names, const char *source, const char *header,
                                    bool ensure_row_contiguous, int shared_memory);
void pn_cuda_kernel_free(pn_cuda_kernel *k);
/* The kernel applied to inputs: writes launch->nout lazy outputs (owned by the current scope)
 * into outs. 0, or -1 with an error (counts that do not match the kernel, a CPU stream). */
int pn_cuda_kernel_call(pn_cuda_kernel *k, int nin, pn_array *const *inputs, const pn_kernel_launch *launch,
                        pn_array **outs);
/* The full source a call would compile (malloc'd, the caller frees it), or NULL with an error. */
char *pn_cuda_kernel_source(pn_cuda_kernel *k, int nin, pn_array *const *inputs, const pn_kernel_launch *launch);
/* A kernel given as PTX or a cubin (code_len bytes) with entry symbol name, called on inputs,
 * then the outputs, then the scalars. Outputs as pn_cuda_kernel_call's. */
int pn_fast_precompiled_cuda_kernel(const char *name, const void *code, size_t code_len, int nin,
                                    pn_array *const *inputs, int nscalars, const pn_kernel_arg *scalars,
                                    const pn_kernel_launch *launch, int shared_memory, bool ensure_row_contiguous,
                                    pn_array **outs);
/* Distributed process groups (mlx.core.distributed) over two backends: "mpi" (Open MPI,
 * loaded at run time; a process started by mpirun joins MPI's world group) and "ring" (TCP
 * sockets; a process whose launcher set torchrun's RANK, WORLD_SIZE, MASTER_ADDR and
 * MASTER_PORT (Slurm's SLURM_PROCID / SLURM_NTASKS for the first two), MLX's MLX_RANK and
 * MLX_HOSTFILE, or MLX's NCCL launch's MLX_RANK, MLX_WORLD_SIZE, NCCL_HOST_IP and NCCL_PORT,
 * joins the ring's world; PONTE_DIST_TIMEOUT (seconds, default 300) bounds the wait for the
 * other processes). Otherwise the global group is the singleton (rank 0 of 1). g NULL means
 * the global group (initialized non-strictly on first use). The collectives and send / recv
 * are lazy: they communicate when evaluated, so every process must evaluate the same
 * collectives of a group in the same order (the graph order of one pn_eval) on the same kind
 * of device. A node on a GPU stream uses NCCL (libnccl loaded at run time; PONTE_NCCL=0: off)
 * on its device buffers when every member of the group has it and NCCL carries the dtype (all
 * but int16 / uint16 reductions and complex64 max / min); otherwise it goes through host
 * memory. pn_compile keeps them in its traces (never merged as common subexpressions). */
typedef struct pn_dist_group pn_dist_group;
/* Whether a backend can be used: "mpi" when Open MPI's library loads; "ring" always (as in
 * MLX); "any" when either is; "nccl" when a usable GPU is present (the simulated one too) and
 * libnccl loads; "jaccl" is not implemented (false). */
bool pn_dist_is_available(const char *backend);
/* The global group (not to be freed; the first call decides it for the process): for "any"
 * the world of the backend whose launcher started the process (mpi, then ring), for "mpi" or
 * "ring" that backend's world when its launcher started the process; for "nccl", when NCCL is
 * usable, the world already joined or else the ring's, with its NCCL communicator made at
 * once (a collective); else the singleton.
 * backend NULL means "any"; an unknown name is PN_ERR_INVALID_ARGUMENT; strict without a usable
 * backend is PN_ERR_BACKEND with the reason (including a ring bootstrap's failure: a bad
 * variable, an unreadable hostfile, a peer that never came). */
pn_dist_group *pn_dist_init(bool strict, const char *backend);
int pn_dist_group_rank(const pn_dist_group *g);
int pn_dist_group_size(const pn_dist_group *g);
/* The subgroup of the processes with the same color (>= 0), ranked by key (< 0: the rank in
 * g); collective over g. The caller frees it with pn_dist_group_free (pending arrays keep it
 * alive). The singleton cannot split (PN_ERR_BACKEND). */
pn_dist_group *pn_dist_group_split(pn_dist_group *g, int color, int key);
void pn_dist_group_free(pn_dist_group *g);
/* Collectives over g: element-wise sum / max / min across processes (bool: or / or / and),
 * concatenation along axis 0 (all_gather; a 0-d x gives shape (size)) and the rank's axis-0
 * shard of the sum (sum_scatter: axis 0 divisible by the size, else PN_ERR_INVALID_ARGUMENT).
 * Every dtype. On one process each is a copy of x. Processes passing different sizes or
 * dtypes get PN_ERR_INVALID_ARGUMENT from the evaluation, on every rank. Derivatives as
 * MLX: all_sum / all_max / all_min pass the cotangent, all_gather's is this rank's rows (and
 * sum_scatter's the cotangent at this rank's rows); forward mode runs the same collective on
 * the tangent (all_sum, all_gather, sum_scatter). */
pn_array *pn_dist_all_sum(pn_array *x, pn_dist_group *g);
pn_array *pn_dist_all_max(pn_array *x, pn_dist_group *g);
pn_array *pn_dist_all_min(pn_array *x, pn_dist_group *g);
pn_array *pn_dist_all_gather(pn_array *x, pn_dist_group *g);
pn_array *pn_dist_sum_scatter(pn_array *x, pn_dist_group *g);
/* Point-to-point: send x to rank dst (the result equals x once sent; evaluate it), receive an
 * array of shape/dtype (or x's) from rank src. A blocking send of a large message waits for
 * its recv: order a ring's sends and recvs so that not every rank sends first. In a singleton
 * group, or with a rank outside the group: PN_ERR_INVALID_ARGUMENT, as MLX. A recv whose size
 * differs from what was sent fails at evaluation. */
pn_array *pn_dist_send(pn_array *x, int dst, pn_dist_group *g);
pn_array *pn_dist_recv(const int64_t *shape, int ndim, pn_dtype dtype, int src, pn_dist_group *g);
pn_array *pn_dist_recv_like(pn_array *x, int src, pn_dist_group *g);
/* Data-parallel training (mlx.nn.average_gradients): out[i] = grads[i] averaged over g's
 * processes (owned by the current scope; on one process a new handle on grads[i]). Arrays of
 * one dtype travel concatenated, one all_sum per run reaching all_reduce_size bytes (<= 0 or
 * mixed dtypes: one per array). Every process passes the same shapes and dtypes in the same
 * order. Returns 0, or -1 with an error (out all NULL). */
int pn_nn_average_gradients(pn_array *const *grads, int n, pn_dist_group *g,
                            int64_t all_reduce_size, pn_array **out);

/* ───────────────────────────── convolution ───────────────────────────── */
/* mlx.core's convolutions. Layouts as MLX: input (N, spatial..., C_in) ("NHWC"), weight
 * (C_out, kernel spatial..., C_in / groups), output (N, out spatial..., C_out). Input and
 * weight are promoted to a common floating dtype (integer inputs are an error). groups splits
 * the channels: output channel o sees input channels of group o / (C_out / groups) only. */

/* The general convolution (mlx.core.conv_general) over the ndim(input) - 2 spatial axes (1 to
 * 3). Each per-axis argument holds one entry per spatial axis; NULL means the default (stride
 * and dilations 1, padding 0). The input is dilated by input_dilation (zeros between its
 * elements), padded with padding_lo before and padding_hi after (negative values crop the
 * input, as MLX), and cross-correlated with the kernel dilated by kernel_dilation at the given
 * strides; flip correlates with the kernel reversed along its spatial axes (a convolution). */
pn_array *pn_conv_general(pn_array *input, pn_array *weight, const int *stride,
                          const int *padding_lo, const int *padding_hi,
                          const int *kernel_dilation, const int *input_dilation, int groups,
                          bool flip);
/* 1-, 2- and 3-d convolutions (input rank 3, 4, 5). The 2-d/3-d forms take 2 or 3 entries per
 * argument, NULL meaning stride 1, padding 0, dilation 1. Padding is symmetric. conv1d, as
 * MLX's, takes its spatial rank from the input's (rank 4 or 5 gives a 2-d or 3-d convolution,
 * the weight of the same rank) and applies its ints to every spatial axis. */
pn_array *pn_conv1d(pn_array *input, pn_array *weight, int stride, int padding, int dilation,
                    int groups);
pn_array *pn_conv2d(pn_array *input, pn_array *weight, const int *stride, const int *padding,
                    const int *dilation, int groups);
pn_array *pn_conv3d(pn_array *input, pn_array *weight, const int *stride, const int *padding,
                    const int *dilation, int groups);
/* Transposed convolutions (mlx.core.conv_transpose1d/2d/3d), weight (C_out, kernel spatial...,
 * C_in / groups) as MLX's ConvTranspose layers hold it: input element j of channel ci adds
 * x * weight[co, k, ci] to output position j * stride + k * dilation - padding (the adjoint of
 * a strided convolution). Output extent (in - 1) * stride - 2 * padding + dilation * (K - 1) +
 * output_padding + 1. Computed as MLX does: conv_general at stride 1 over the input dilated by
 * stride, with the kernel flipped. conv_transpose1d infers its spatial rank as conv1d does. */
pn_array *pn_conv_transpose1d(pn_array *input, pn_array *weight, int stride, int padding,
                              int dilation, int output_padding, int groups);
pn_array *pn_conv_transpose2d(pn_array *input, pn_array *weight, const int *stride,
                              const int *padding, const int *dilation,
                              const int *output_padding, int groups);
pn_array *pn_conv_transpose3d(pn_array *input, pn_array *weight, const int *stride,
                              const int *padding, const int *dilation,
                              const int *output_padding, int groups);
/* numpy's (and mlx.core's) discrete convolution of two non-empty 1-d arrays; mode is "full",
 * "same" or "valid". */
pn_array *pn_convolve(pn_array *a, pn_array *v, const char *mode);

/* ───────────────────────────── sorting ───────────────────────────── */

/* Sorted along axis (PN_ALL_AXES: flattened); NaNs last, as MLX. */
pn_array *pn_sort(pn_array *a, int axis);
/* Indices (uint32) that sort along axis; stable. */
pn_array *pn_argsort(pn_array *a, int axis);
/* The kth element in its sorted place, smaller ones before, larger after. */
pn_array *pn_partition(pn_array *a, int kth, int axis);
pn_array *pn_argpartition(pn_array *a, int kth, int axis);
/* The k largest elements along axis (unordered, as MLX). */
pn_array *pn_topk(pn_array *a, int k, int axis);

/* ───────────────────────────── random ───────────────────────────── */
/* Keys are uint32 arrays of shape (2,). A NULL key draws from the global key, which
 * pn_random_seed sets; the same key gives the same bits as MLX. */

pn_array *pn_random_key(uint64_t seed);
void pn_random_seed(uint64_t seed);
/* num new keys of shape (num, 2). */
pn_array *pn_random_split(pn_array *key, int num);
/* Raw random bits: width 1, 2 or 4 bytes gives uint8/16/32. */
pn_array *pn_random_bits(const int64_t *shape, int ndim, int width, pn_array *key);
pn_array *pn_random_uniform(pn_array *low, pn_array *high, const int64_t *shape, int ndim,
                            pn_dtype dtype, pn_array *key);
pn_array *pn_random_normal(const int64_t *shape, int ndim, pn_dtype dtype, double loc,
                           double scale, pn_array *key);
/* pn_random_normal with loc and scale arrays (either may be NULL: 0 and 1; cast to dtype),
 * each broadcasting to shape, as MLX's normal(shape, dtype, loc, scale): scale * N(0, 1) + loc
 * of dtype (float or complex64; a complex loc moves the complex samples). */
pn_array *pn_random_normal_arrays(const int64_t *shape, int ndim, pn_dtype dtype, pn_array *loc,
                                  pn_array *scale, pn_array *key);
/* Integers in [low, high); drawn through float32 as MLX 0.32 does (exact for |bounds| < 2^24). */
pn_array *pn_random_randint(pn_array *low, pn_array *high, const int64_t *shape, int ndim,
                            pn_dtype dtype, pn_array *key);
/* p may be NULL (0.5). shape == NULL uses p's shape. */
pn_array *pn_random_bernoulli(pn_array *p, const int64_t *shape, int ndim, pn_array *key);
/* Normal values truncated to [lower, upper]; shape == NULL uses the broadcast shape of lower
 * and upper. */
pn_array *pn_random_truncated_normal(pn_array *lower, pn_array *upper, const int64_t *shape,
                                     int ndim, pn_dtype dtype, pn_array *key);
/* Samples from logits along axis; num_samples > 0 appends that axis, else shape (may be
 * NULL: logits' shape without axis). */
pn_array *pn_random_categorical(pn_array *logits, int axis, const int64_t *shape, int ndim,
                                int num_samples, pn_array *key);
pn_array *pn_random_gumbel(const int64_t *shape, int ndim, pn_dtype dtype, pn_array *key);
pn_array *pn_random_laplace(const int64_t *shape, int ndim, pn_dtype dtype, double loc,
                            double scale, pn_array *key);
/* Samples N(mean, cov) through an SVD square root of cov; not differentiable with respect
 * to cov. */
pn_array *pn_random_multivariate_normal(pn_array *mean, pn_array *cov, const int64_t *shape,
                                        int ndim, pn_dtype dtype, pn_array *key);
/* A permutation of x along axis. */
pn_array *pn_random_permutation(pn_array *x, int axis, pn_array *key);
/* A permutation of arange(n). */
pn_array *pn_random_permutation_n(int64_t n, pn_array *key);

/* ───────────────────────────── function transformations ───────────────────────────── */

/* The largest number of outputs a function may return through a closure. */
#define PN_MAX_OUTPUTS 64

/* A function of arrays: reads nin inputs, writes up to PN_MAX_OUTPUTS outputs into out and
 * their count into *nout. Returns 0, or -1 after setting an error. The outputs it writes are
 * returned to the caller (the caller's scope or the caller owns them). */
typedef int (*pn_fn)(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out);

typedef struct pn_closure pn_closure;

/* Wraps fn and ctx; destroy (may be NULL) runs on ctx when the last reference goes. */
pn_closure *pn_closure_new(pn_fn fn, void *ctx, void (*destroy)(void *ctx));
pn_closure *pn_closure_retain(pn_closure *f);
void pn_closure_release(pn_closure *f);
/* Calls f. Returns 0 or -1 with an error. */
int pn_closure_call(pn_closure *f, int nin, pn_array *const *in, int *nout, pn_array **out);

/* Vector-Jacobian product of f at primals with one cotangent per output: outputs go to
 * out (count in *nout), the nprimals input cotangents to vjps. Returns 0 or -1. */
int pn_vjp(pn_closure *f, int nprimals, pn_array *const *primals, int ncotangents,
           pn_array *const *cotangents, int *nout, pn_array **out, pn_array **vjps);
/* Jacobian-vector product of f at primals with one tangent per primal: outputs to out and
 * their tangents to jvps (both *nout long). Returns 0 or -1. */
int pn_jvp(pn_closure *f, int nprimals, pn_array *const *primals, pn_array *const *tangents,
           int *nout, pn_array **out, pn_array **jvps);
/* A closure computing the gradient of f's first output (a scalar) with respect to the
 * inputs listed in argnums (NULL: input 0); its outputs are the nargnums gradients. */
pn_closure *pn_grad(pn_closure *f, const int *argnums, int nargnums);
/* As pn_grad, but the closure returns all of f's outputs (the value and any auxiliary
 * outputs) followed by the gradients. */
pn_closure *pn_value_and_grad(pn_closure *f, const int *argnums, int nargnums);
/* Calls f at in and differentiates its first output (0-d) with respect to the nargnums inputs
 * listed in argnums (negative: from the end): f's outputs go to out (count in *nout, room for
 * PN_MAX_OUTPUTS), the gradients to grads[nargnums], with no limit on their number (the
 * closures of pn_grad and pn_value_and_grad return at most PN_MAX_OUTPUTS arrays in all).
 * New arrays, owned like op results. Returns 0, or -1 with an error and nothing returned. */
int pn_value_and_grad_call(pn_closure *f, int nin, pn_array *const *in, const int *argnums,
                           int nargnums, int *nout, pn_array **out, pn_array **grads);
/* A closure equal to f that keeps only its inputs for the backward pass and recomputes the
 * rest there (gradient checkpointing). */
pn_closure *pn_checkpoint(pn_closure *f);
/* A closure equal to f whose vjp is computed by vjp_fn. vjp_fn receives the primals, then
 * the cotangents (one per output), then the outputs (nin = nprimals + 2 * nout) and writes one
 * cotangent per primal. */
pn_closure *pn_custom_vjp(pn_closure *f, pn_closure *vjp_fn);
/* mlx.core.custom_function's rules in one closure equal to f: vjp_fn as pn_custom_vjp's (NULL:
 * the vjp of f, recomputed from the primals); jvp_fn receives the primals then one tangent per
 * primal (zeros where the caller has none; nin = 2 * nprimals) and writes one tangent per
 * output, of the output's shape (NULL: the jvp of f); vmap_fn receives the batched inputs then
 * one 0-d int32 array per input holding its batch axis (-1: not batched) and writes the batched
 * outputs followed by one 0-d integer array per output with its batch axis (-1: not batched)
 * (NULL: vmap maps f). */
pn_closure *pn_custom_function(pn_closure *f, pn_closure *vjp_fn, pn_closure *jvp_fn,
                               pn_closure *vmap_fn);
/* Vectorizes f over axis in_axes[i] of input i (-1: not mapped); outputs get the mapped axis
 * at out_axes[j] (NULL: 0); an output that depends on no mapped input is broadcast along it,
 * as MLX does. */
pn_closure *pn_vmap(pn_closure *f, const int *in_axes, int nin, const int *out_axes, int nout);

/* ── Compilation: mx.compile, mx.disable_compile, mx.enable_compile (src/transforms/compile.c,
 * src/transforms/trace.c). ── */

/* A closure equal to f that, on its first call for an input signature (the number of inputs,
 * their dtypes and shapes; with shapeless only dtypes and ranks), calls f once on tracer
 * inputs and records the graph of primitives from its inputs to its outputs; it simplifies
 * the record (equal scalar constants merged, common subexpressions — same primitive, params
 * and inputs — computed once, unused nodes dropped) and, on that call and every later one
 * with the signature, rebuilds the recorded graph on the given inputs without calling f.
 * Arrays f captures (neither inputs nor computed from them) are evaluated once at the trace
 * and frozen into the record, as MLX does: later changes to them are not seen (pass them as
 * inputs instead). f must not evaluate an array that depends on its inputs (the trace fails
 * with PN_ERR_INVALID_ARGUMENT), and must not use custom_function, custom_vjp or checkpoint
 * (their nodes hold functions; refused). With shapeless, a record is replayed at new shapes
 * only when every primitive in it infers its output shape from its inputs (elementwise ops,
 * where, astype); others fail at the first call (PN_ERR_INVALID_ARGUMENT). While compilation
 * is disabled, or inside another transformation's trace (grad, vmap, ...), the closure calls
 * f directly. Errors as pn_closure_call's. NULL f: NULL with an error. */
pn_closure *pn_compile(pn_closure *f, bool shapeless);
/* Turns compilation on or off for the process (mx.enable_compile / mx.disable_compile). It
 * starts off when the environment sets PONTE_DISABLE_COMPILE or MLX_DISABLE_COMPILE to a
 * non-zero integer. */
void pn_compile_set_enabled(bool enabled);
bool pn_compile_enabled(void);

/* ── Exporting and importing functions: mx.export_function, mx.import_function, mx.exporter
 * (src/io/export.c). A function is traced on example inputs into its graph of primitives and
 * written to a file in Ponte's own format (it does not read MLX's .mlxfn files): the inputs'
 * dtypes and shapes, the arrays it captured (constants) with their data, and per node the
 * primitive's name, params and input references. Importing replays the graph on new inputs of
 * the same dtypes and shapes. The function receives the positional inputs, then the keyword
 * inputs in ascending order of their names (UTF-8 byte order). It must not evaluate arrays
 * that depend on its inputs (PN_ERR_INVALID_ARGUMENT, as MLX refuses eval under a trace).
 * Primitives holding C functions (custom_function, custom_vjp, checkpoint) cannot be
 * exported. With shapeless = true the file's traces match inputs by dtype and rank only and
 * replay at the new shapes through the shape rules of shapeless compile (pn_compile); a
 * function with a primitive that has no rule (Slice, Pad, topk, ...) is refused when it is
 * exported (PN_ERR_INVALID_ARGUMENT, as MLX's), and a replay whose shapes do not fit (a matmul
 * of mismatched sizes, a reshape to a size the new inputs do not have) fails at the call. Params are stored as the
 * library's structs: a file is read by the Ponte build (same ABI) that wrote it; the reader
 * checks the file's structure (PN_ERR_IO on any inconsistency) but trusts the params' values
 * like code: import only files you trust. ── */

/* Traces f on nargs positional inputs args and nkw keyword inputs (kw_names[i] -> kwargs[i],
 * distinct non-empty names) and writes the graph to path, with metadata (a string saved with
 * the function; NULL: none). Returns 0, or -1 with an error (PN_ERR_IO when the file cannot be
 * written; a failed trace leaves an existing file as it was). */
int pn_export_function(const char *path, pn_closure *f, int nargs, pn_array *const *args, int nkw,
                       const char *const *kw_names, pn_array *const *kwargs, bool shapeless,
                       const char *metadata);

/* mx.exporter: one file holding several traces of one function (one per input signature). */
typedef struct pn_exporter pn_exporter;
/* Creates path at once (with no traces yet) and retains f. NULL with an error. */
pn_exporter *pn_exporter_new(const char *path, pn_closure *f, bool shapeless, const char *metadata);
/* Traces f on these inputs (as pn_export_function) and rewrites the file with every trace so
 * far. Returns 0, or -1 with an error (the file keeps the earlier traces); after
 * pn_exporter_close, -1 with PN_ERR_INVALID_ARGUMENT. */
int pn_exporter_call(pn_exporter *e, int nargs, pn_array *const *args, int nkw,
                     const char *const *kw_names, pn_array *const *kwargs);
/* Ends exporting (later calls fail). Returns 0. */
int pn_exporter_close(pn_exporter *e);
/* Closes and frees e (NULL is ignored). */
void pn_exporter_free(pn_exporter *e);

/* An imported function: every trace of the file, the captured constants and the metadata. */
typedef struct pn_imported_function pn_imported_function;
/* Reads path (hostile input: truncation, a wrong magic, version or checksum, unknown
 * primitives, out-of-range input references, params sizes or input counts a primitive does
 * not take, and shapes inconsistent with byte counts are all PN_ERR_IO). NULL with an error. */
pn_imported_function *pn_import_function(const char *path);
void pn_imported_function_free(pn_imported_function *f);
/* The metadata string saved with the function ("" when none); valid while f lives. */
const char *pn_imported_function_metadata(const pn_imported_function *f);
/* Runs the trace whose signature matches: nargs positional and nkw keyword inputs with the
 * same names, dtypes and shapes as exported; none matching is PN_ERR_INVALID_ARGUMENT with a
 * message listing the signatures the file holds. Outputs go to out (count in *nout, room for
 * PN_MAX_OUTPUTS), new arrays owned like op results (lazy: the replayed graph is built on the
 * current stream, so it runs on the default device and can be differentiated). 0 or -1. */
int pn_imported_function_call(pn_imported_function *f, int nargs, pn_array *const *args, int nkw,
                              const char *const *kw_names, pn_array *const *kwargs, int *nout,
                              pn_array **out);
/* A closure running f (it keeps f alive): its inputs are the positional inputs, then the
 * keyword ones in ascending order of name; the first trace whose inputs match is run. For
 * pn_grad, pn_vmap and the other transformations. NULL with an error. */
pn_closure *pn_imported_function_closure(pn_imported_function *f);


/* ───────────────────────────── nn: layers as functions ───────────────────────────── */
/* mlx.nn's layers, activations, losses and initializers as functions over arrays. Weights
 * use MLX's layouts (linear: weight (out, in)). */

/* x @ weight.T + bias (bias may be NULL). */
pn_array *pn_nn_linear(pn_array *x, pn_array *weight, pn_array *bias);
pn_array *pn_nn_embedding(pn_array *indices, pn_array *weight);

/* Activations (mlx.nn names). */
pn_array *pn_nn_relu(pn_array *x);
pn_array *pn_nn_relu6(pn_array *x);
pn_array *pn_nn_leaky_relu(pn_array *x, double negative_slope);
pn_array *pn_nn_elu(pn_array *x, double alpha);
pn_array *pn_nn_selu(pn_array *x);
pn_array *pn_nn_celu(pn_array *x, double alpha);
pn_array *pn_nn_gelu(pn_array *x);           /* exact, with erf */
pn_array *pn_nn_gelu_approx(pn_array *x);    /* tanh approximation */
pn_array *pn_nn_gelu_fast_approx(pn_array *x); /* x * sigmoid(1.702 x) */
pn_array *pn_nn_silu(pn_array *x);
pn_array *pn_nn_sigmoid(pn_array *x);
pn_array *pn_nn_log_sigmoid(pn_array *x);
pn_array *pn_nn_softplus(pn_array *x);
pn_array *pn_nn_softsign(pn_array *x);
pn_array *pn_nn_mish(pn_array *x);
pn_array *pn_nn_hardswish(pn_array *x);
pn_array *pn_nn_hard_tanh(pn_array *x, double min_val, double max_val);
pn_array *pn_nn_tanh(pn_array *x);
/* Splits x in two halves along axis: a * sigmoid(b). */
pn_array *pn_nn_glu(pn_array *x, int axis);
pn_array *pn_nn_prelu(pn_array *x, pn_array *alpha);
/* nn activations, rest of mlx.nn (issue 3); results owned by the current scope, NULL with
 * PN_ERR_INVALID_ARGUMENT on a bad axis. softshrink: x - sign(x) lambd where |x| > lambd, else
 * 0; hard_shrink: x where |x| > lambd, else 0 (MLX default lambd 0.5); step: 1 where
 * x > threshold, else 0 (int32, as mx.where(x > t, 1, 0)); softmin: softmax(-x) along axis. */
pn_array *pn_nn_softshrink(pn_array *x, double lambd);
pn_array *pn_nn_hard_shrink(pn_array *x, double lambd);
pn_array *pn_nn_step(pn_array *x, double threshold);
pn_array *pn_nn_softmin(pn_array *x, int axis);

/* mx.fast.layer_norm / rms_norm: each row of x's last axis normalized, (x - mean) /
 * sqrt(var + eps) (RMS: x / sqrt(mean(x^2) + eps)), times weight, plus bias (NULL: none), as
 * one fused node (its gradient one more). weight and bias must be 1-d of x's last extent;
 * the result dtype is x's promoted with weight's (and bias's when weight is given), which
 * must be a float type; halves accumulate in float32. Owned by the current scope; NULL with
 * PN_ERR_INVALID_ARGUMENT on a 0-d x, a wrong weight/bias shape or a non-float dtype. */
pn_array *pn_nn_layer_norm(pn_array *x, pn_array *weight, pn_array *bias, double eps);
pn_array *pn_nn_rms_norm(pn_array *x, pn_array *weight, double eps);
/* Batch normalization of x (N, ..., C; 2 to 4 dims) over all axes but the last, as
 * mlx.nn.BatchNorm. Uses the batch mean and biased variance when training or when no running
 * statistics are given, else running_mean/running_var (both or neither, shape (C,)). When
 * training with running statistics, *new_mean / *new_var (each pointer may be NULL) receive
 * (1 - momentum) * running + momentum * batch_stat (biased variance); otherwise, and on error,
 * they are set to NULL. weight/bias: (C,) or NULL. */
pn_array *pn_nn_batch_norm(pn_array *x, pn_array *weight, pn_array *bias, pn_array *running_mean,
                           pn_array *running_var, bool training, double momentum, double eps,
                           pn_array **new_mean, pn_array **new_var);
/* Group normalization of x (N, ..., C) as mlx.nn.GroupNorm: C divisible by num_groups;
 * statistics per sample and group over the spatial axes and the group's channels. Grouping:
 * channel c is in group c % num_groups (MLX default), or c / (C / num_groups) when
 * pytorch_compatible. weight/bias: (C,) or NULL. */
pn_array *pn_nn_group_norm(pn_array *x, int num_groups, pn_array *weight, pn_array *bias, double eps,
                           bool pytorch_compatible);
/* Instance normalization of x (N, ..., C) as mlx.nn.InstanceNorm: per sample and channel over
 * the spatial axes 1..ndim-2 (2-d x normalizes to 0, as MLX). weight/bias: (C,) or NULL. */
pn_array *pn_nn_instance_norm(pn_array *x, pn_array *weight, pn_array *bias, double eps);

/* Zeroes elements with probability p and scales the rest by 1/(1-p); identity when p == 0.
 * key may be NULL (global random state). */
pn_array *pn_nn_dropout(pn_array *x, double p, pn_array *key);

typedef enum pn_loss_reduction {
    PN_REDUCTION_NONE = 0,
    PN_REDUCTION_MEAN,
    PN_REDUCTION_SUM
} pn_loss_reduction;

/* Cross entropy of logits against integer class targets (or probabilities of logits' shape)
 * along axis, with label smoothing in [0, 1). */
pn_array *pn_nn_cross_entropy(pn_array *logits, pn_array *targets, int axis,
                              double label_smoothing, pn_loss_reduction reduction);
pn_array *pn_nn_binary_cross_entropy(pn_array *inputs, pn_array *targets, bool with_logits,
                                     pn_loss_reduction reduction);
pn_array *pn_nn_mse_loss(pn_array *predictions, pn_array *targets, pn_loss_reduction reduction);
pn_array *pn_nn_l1_loss(pn_array *predictions, pn_array *targets, pn_loss_reduction reduction);
pn_array *pn_nn_smooth_l1_loss(pn_array *predictions, pn_array *targets, double beta,
                               pn_loss_reduction reduction);
pn_array *pn_nn_huber_loss(pn_array *inputs, pn_array *targets, double delta,
                           pn_loss_reduction reduction);
pn_array *pn_nn_nll_loss(pn_array *inputs, pn_array *targets, int axis,
                         pn_loss_reduction reduction);
pn_array *pn_nn_kl_div_loss(pn_array *inputs, pn_array *targets, int axis,
                            pn_loss_reduction reduction);
/* nn losses, rest of mlx.nn.losses (issue 3). Results are owned by the current scope; invalid
 * reduction, axis or shapes (where MLX checks them) set PN_ERR_INVALID_ARGUMENT and give NULL.
 * log_cosh: log(cosh(inputs - targets)). hinge: max(1 - inputs * targets, 0). Both broadcast. */
pn_array *pn_nn_log_cosh_loss(pn_array *inputs, pn_array *targets, pn_loss_reduction reduction);
pn_array *pn_nn_hinge_loss(pn_array *inputs, pn_array *targets, pn_loss_reduction reduction);
/* sum(x1 * x2, axis) / max(|x1| |x2|, eps), norms along axis (MLX default axis 1, eps 1e-8). */
pn_array *pn_nn_cosine_similarity_loss(pn_array *x1, pn_array *x2, int axis, double eps,
                                       pn_loss_reduction reduction);
/* max(-targets * (inputs1 - inputs2) + margin, 0); all three of one shape. */
pn_array *pn_nn_margin_ranking_loss(pn_array *inputs1, pn_array *inputs2, pn_array *targets,
                                    double margin, pn_loss_reduction reduction);
/* 0.5 (log v + (targets - inputs)^2 / v) with v = max(vars, eps), + 0.5 log(2 pi) when full;
 * all three of one shape. */
pn_array *pn_nn_gaussian_nll_loss(pn_array *inputs, pn_array *targets, pn_array *vars, bool full,
                                  double eps, pn_loss_reduction reduction);
/* max(d(a, p) - d(a, n) + margin, 0), d(a, b) = sqrt(sum((a - b)^p, axis) + eps) as MLX
 * computes it (no absolute value; the root is a square root whatever p). */
pn_array *pn_nn_triplet_loss(pn_array *anchors, pn_array *positives, pn_array *negatives, int axis,
                             double p, double margin, double eps, pn_loss_reduction reduction);

/* Initializers (mlx.nn.init): new arrays of shape/dtype. key may be NULL. */
pn_array *pn_nn_init_uniform(const int64_t *shape, int ndim, pn_dtype dtype, double low,
                             double high, pn_array *key);
pn_array *pn_nn_init_normal(const int64_t *shape, int ndim, pn_dtype dtype, double mean,
                            double std, pn_array *key);
/* fan_in/fan_out from the last two axes as mlx.nn.init computes them. */
pn_array *pn_nn_init_glorot_uniform(const int64_t *shape, int ndim, pn_dtype dtype,
                                    double gain, pn_array *key);
pn_array *pn_nn_init_glorot_normal(const int64_t *shape, int ndim, pn_dtype dtype, double gain,
                                   pn_array *key);
pn_array *pn_nn_init_he_uniform(const int64_t *shape, int ndim, pn_dtype dtype, bool fan_out,
                                double gain, pn_array *key);
pn_array *pn_nn_init_he_normal(const int64_t *shape, int ndim, pn_dtype dtype, bool fan_out,
                               double gain, pn_array *key);
/* nn initializers, rest of mlx.nn.init (issue 3); new arrays owned by the current scope, key
 * may be NULL. constant: filled with value. identity: eye of a square 2-d shape. sparse: 2-d
 * N(mean, std^2) with ceil(sparsity * cols) random entries of each row zeroed. orthogonal: 2-d,
 * the first rows x cols block of Q (signs fixed by diag(R)) of the QR of a max(rows, cols)
 * square N(0, 1) matrix, times gain. Other shapes: PN_ERR_INVALID_ARGUMENT and NULL. */
pn_array *pn_nn_init_constant(const int64_t *shape, int ndim, pn_dtype dtype, double value);
pn_array *pn_nn_init_identity(const int64_t *shape, int ndim, pn_dtype dtype);
pn_array *pn_nn_init_sparse(const int64_t *shape, int ndim, pn_dtype dtype, double sparsity,
                            double mean, double std, pn_array *key);
pn_array *pn_nn_init_orthogonal(const int64_t *shape, int ndim, pn_dtype dtype, double gain,
                                pn_array *key);

/* Attention and positional encodings (mx.fast.scaled_dot_product_attention, nn.RoPE,
 * nn.SinusoidalPositionalEncoding, nn.ALiBi). */
/* softmax(scale * q @ k^T + mask) @ v for q (B, Hq, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk,
 * Dv) -> (B, Hq, Lq, Dv) in the promoted floating dtype; Hq must be a multiple of Hkv (query
 * head h uses kv head h / (Hq / Hkv): grouped-query attention). mask_mode NULL, "" or "array":
 * mask (may be NULL except for "array") broadcasts to (B, Hq, Lq, Lk); a bool mask keeps the
 * scores where true (others get the dtype's lowest finite value), another dtype is added and
 * must promote to the output dtype. "causal" (mask must be NULL): query i sees keys
 * j <= i + Lk - Lq (aligned to the lower right). One fused node (its gradient another): half
 * types are computed in float32 throughout and rounded once, as MLX's fused kernels do; a row
 * whose every score is masked by false (or causal) averages all values (its scores all become
 * finfo.min, as in MLX's unfused path). A row that an additive mask pushes to huge negative
 * scores (-1e9, finfo.min) is the softmax of the scores as rounded, uniform over the keys
 * whose scores became equal, in the forward and the gradients alike; a row of -inf additive
 * scores is NaN, and so are its dq row and the dk and dv of its kv head (NaN * 0 in the
 * products), as in MLX. Any head dims on every device. */
pn_array *pn_fast_scaled_dot_product_attention(pn_array *q, pn_array *k, pn_array *v,
                                               double scale, const char *mask_mode,
                                               pn_array *mask);
/* The same with attention sinks (MLX's sinks=, gpt-oss): sinks NULL, or one logit per query
 * head, shape (n_heads,), of a dtype promoting to the result's: one more softmax column per
 * row whose value is 0 (it takes probability mass from the keys). Differentiable in q, k, v
 * and sinks. */
pn_array *pn_fast_scaled_dot_product_attention_sinks(pn_array *q, pn_array *k, pn_array *v, double scale,
                                                     const char *mask_mode, pn_array *mask, pn_array *sinks);
/* Rotary positional encoding (mx.fast.rope) of floating x (..., L, D), rank >= 3: rotates the
 * first dims (even, <= D) features of position p = (offset + l) * scale by angles
 * p * base^(-i / (dims/2)), i < dims/2; traditional pairs features (2i, 2i+1), otherwise
 * (i, i + dims/2). The other features pass through. Same shape and dtype as x. */
pn_array *pn_nn_rope(pn_array *x, int dims, bool traditional, double base, double scale,
                     int64_t offset);
/* pn_nn_rope with MLX's other choices: offset NULL (0), an integer scalar, or a vector of one
 * offset per entry of x's first (batch) axis; freqs NULL (the angles from base), or a
 * floating (dims/2,) array whose reciprocals are the angles per position (base must then be
 * 0: exactly one of the two is given). */
pn_array *pn_fast_rope(pn_array *x, int dims, bool traditional, double base, double scale, pn_array *offset,
                       pn_array *freqs);
/* nn.SinusoidalPositionalEncoding(dims, min_freq, max_freq, scale, cos_first, full_turns)
 * applied to positions (...): (..., 2 * (dims/2)) = scale * [sin(p s), cos(p s)] (cos first
 * when cos_first) with dims/2 frequencies s log-spaced from max_freq down to min_freq (times
 * 2 pi when full_turns). scale 0 means MLX's default sqrt(2 / dims); dims >= 4. MLX's
 * defaults: min_freq 1e-4, max_freq 1. Dtype: positions' promoted with float32. */
pn_array *pn_nn_sinusoidal_positional_encoding(pn_array *positions, int dims, double min_freq,
                                               double max_freq, double scale, bool cos_first,
                                               bool full_turns);
/* nn.ALiBi's additive attention bias, shape (1, num_heads, q_len, k_len): -|offset + i - j|
 * times head h's slope (the paper's: 2^(-8 (h+1) / H) for a power-of-two H, else those of the
 * nearest lower power of two followed by every other slope of twice that). dtype floating. */
pn_array *pn_nn_alibi_bias(int64_t q_len, int64_t k_len, int num_heads, int64_t offset,
                           pn_dtype dtype);

/* Pooling over the spatial axes of x (N, spatial..., C), as mlx.nn.MaxPool1d/2d/3d and
 * AvgPool1d/2d/3d: windows of kernel_size slide by stride (NULL or, for 1-d, 0: kernel_size)
 * over x padded by padding on both sides (NULL: 0); max pooling pads with -inf (the lowest
 * value for integers), average pooling with zeros that count in the mean. */
pn_array *pn_nn_max_pool1d(pn_array *x, int kernel_size, int stride, int padding);
pn_array *pn_nn_max_pool2d(pn_array *x, const int *kernel_size, const int *stride,
                           const int *padding);
pn_array *pn_nn_max_pool3d(pn_array *x, const int *kernel_size, const int *stride,
                           const int *padding);
pn_array *pn_nn_avg_pool1d(pn_array *x, int kernel_size, int stride, int padding);
pn_array *pn_nn_avg_pool2d(pn_array *x, const int *kernel_size, const int *stride,
                           const int *padding);
pn_array *pn_nn_avg_pool3d(pn_array *x, const int *kernel_size, const int *stride,
                           const int *padding);

/* Recurrent layers, upsampling and bilinear (mlx.nn.RNN, GRU, LSTM, Upsample, Bilinear) over
 * given weights, in MLX's layouts. x is (..., L, D) (usually (N, L, D) or (L, D), L >= 1);
 * initial states broadcast against (..., H) and NULL means zeros; each returns every hidden
 * state, shape (..., L, H), in the promoted dtype. */
/* Elman RNN: h_t = f(x_t @ Wxh^T + bias + h_{t-1} @ Whh^T), Wxh (H, D), Whh (H, H), bias (H,)
 * or NULL. nonlinearity maps one array to one array of the same shape (NULL: tanh). */
pn_array *pn_nn_rnn(pn_array *x, pn_array *wxh, pn_array *whh, pn_array *bias, pn_array *hidden,
                    pn_closure *nonlinearity);
/* GRU with Wx (3H, D), Wh (3H, H) (row blocks r, z, n), b (3H,) and bhn (H,) (each may be
 * NULL): r, z = sigmoid(x_t Wx_rz^T + b_rz + h Wh_rz^T), n = tanh(x_t Wx_n^T + b_n + r * (h
 * Wh_n^T + bhn)), h' = (1 - z) * n + z * h. */
pn_array *pn_nn_gru(pn_array *x, pn_array *wx, pn_array *wh, pn_array *b, pn_array *bhn,
                    pn_array *hidden);
/* LSTM with Wx (4H, D), Wh (4H, H) (row blocks i, f, g, o), bias (4H,) or NULL: c' = f * c +
 * i * g, h' = o * tanh(c') (i, f, o sigmoid, g tanh). Returns the hidden states; *cell_out (if
 * cell_out is non-NULL) receives the cell states, same shape (NULL on error). */
pn_array *pn_nn_lstm(pn_array *x, pn_array *wx, pn_array *wh, pn_array *bias, pn_array *hidden,
                     pn_array *cell, pn_array **cell_out);
/* Upsamples the spatial axes of x (N, spatial..., C; at least one): axis of size n becomes
 * int(scale * n), with nscale 1 (every axis) or ndim - 2 positive scales (fractions allowed).
 * mode "nearest" (or NULL), "linear" or "cubic" (a = -0.75), MLX's sampling grid;
 * align_corners maps the corner samples onto each other (linear, cubic); antialias (linear and
 * cubic, without align_corners) widens the filter by 1/scale when downsampling and renormalizes
 * it, cubic then with a = -0.5, as MLX and PyTorch's interpolate(antialias=True). Nearest keeps
 * x's dtype, linear and cubic promote it with float32. */
pn_array *pn_nn_upsample(pn_array *x, const double *scale, int nscale, const char *mode,
                         bool align_corners, bool antialias);
/* y[..., o] = x2[..., :] @ weight[o] @ x1[..., :] + bias[o] for x1 (..., in1), x2 (..., in2)
 * with the same leading shape, weight (out, in2, in1), bias (out,) or NULL: (..., out). */
pn_array *pn_nn_bilinear(pn_array *x1, pn_array *x2, pn_array *weight, pn_array *bias);

/* ───────────────────────────── parameter trees ───────────────────────────── */
/* An ordered map from dotted names ("layers.0.weight", as mlx.utils.tree_flatten writes them)
 * to arrays: a model's parameters, its gradients, an optimizer's state. The map holds its own
 * references. */

typedef struct pn_params pn_params;

pn_params *pn_params_new(void);
void pn_params_free(pn_params *p);
/* Sets name to a (retained; replaces and releases an existing entry). Returns 0 or -1. */
int pn_params_set(pn_params *p, const char *name, pn_array *a);
/* The array stored under name (borrowed), or NULL. */
pn_array *pn_params_get(const pn_params *p, const char *name);
int pn_params_count(const pn_params *p);
const char *pn_params_name(const pn_params *p, int i);
pn_array *pn_params_at(const pn_params *p, int i);
/* Entries whose names start with "prefix." as a new map with the prefix removed. */
pn_params *pn_params_subtree(const pn_params *p, const char *prefix);
/* Evaluates every array in the map. */
int pn_params_eval(const pn_params *p);

/* ───────────────────────────── nn: transformer blocks ───────────────────────────── */
/* mlx.nn.TransformerEncoderLayer, TransformerDecoderLayer, TransformerEncoder,
 * TransformerDecoder and Transformer as functions over parameter trees holding MLX's names
 * (under prefix; NULL or "" for none), so weights saved by MLX load unchanged:
 *   encoder layer: attention.{query,key,value,out}_proj.weight (dims, dims; no biases),
 *                  ln1/ln2.{weight,bias} (dims), linear1.weight (mlp, dims), linear1.bias (mlp),
 *                  linear2.weight (dims, mlp), linear2.bias (dims)
 *   decoder layer: self_attention.*, cross_attention.* (as attention.*), ln1/ln2/ln3, linear1/2
 *   encoder / decoder: layers.<i>.<layer names> for i < num_*_layers, ln.{weight,bias}
 *   transformer: encoder.<encoder names>, decoder.<decoder names>
 * x, memory: (B, L, dims) (or unbatched (L, dims), which MLX does not take). A layer computes,
 * with norm_first (pre-norm, MLX's default), x += drop(attn(ln1(x))) [decoder: then
 * x += drop(cross_attn(ln2(x), memory))], x += linear2(drop(act(linear1(ln_last(x))))); without
 * it, MLX's post-norm order, whose decoder queries the cross attention with the self-attention
 * output (as MLX does). Attention is mlx.nn.MultiHeadAttention: per-head scale 1/sqrt(dims /
 * num_heads) through pn_fast_scaled_dot_product_attention. Layer norms use eps 1e-5. Errors
 * (shapes, missing or misshapen parameters, a bad config) return NULL. */

/* An attention mask as pn_fast_scaled_dot_product_attention takes it: mode NULL or "" with
 * array NULL (no mask) or an additive / boolean array broadcasting to (B, num_heads, L, S);
 * "array" with an array; "causal" with array NULL. (pn_attention_mask){0} is no mask. */
typedef struct pn_attention_mask {
    const char *mode;
    pn_array *array;
} pn_attention_mask;

typedef struct pn_transformer_config {
    int dims;               /* model width, the last axis of x and memory */
    int num_heads;          /* attention heads; must divide dims */
    int mlp_dims;           /* hidden width of each layer's MLP; 0: 4 * dims (MLX's None) */
    int num_encoder_layers; /* layers of an encoder (pn_nn_transformer_encoder, transformer) */
    int num_decoder_layers; /* layers of a decoder */
    double dropout;         /* in [0, 1): dropout after each attention and after the MLP's
                             * activation. Applied whenever > 0: set 0 for inference (what
                             * Module.eval() does in MLX) */
    pn_closure *activation; /* the MLP's activation, one array in, one out (borrowed); NULL:
                             * pn_nn_relu */
    bool norm_first;        /* pre-norm layers (MLX's default: true) */
} pn_transformer_config;

/* Which block pn_nn_transformer_init creates. */
typedef enum pn_transformer_part {
    PN_TRANSFORMER_ENCODER_LAYER = 0,
    PN_TRANSFORMER_DECODER_LAYER,
    PN_TRANSFORMER_ENCODER,
    PN_TRANSFORMER_DECODER,
    PN_TRANSFORMER
} pn_transformer_part;

/* Adds the float32 parameters of part to params under prefix, in MLX's order and with MLX's
 * initialization: every linear weight and bias uniform(-1/sqrt(in), 1/sqrt(in)), layer norms
 * weight 1, bias 0. key NULL draws from the global random state (the same draws, in the same
 * order, as constructing the mlx.nn module); otherwise each tensor gets its own key split from
 * key. Returns 0, or -1 with an error (params may then hold some of the entries). */
int pn_nn_transformer_init(pn_params *params, const char *prefix, pn_transformer_part part,
                           const pn_transformer_config *cfg, pn_array *key);
/* The blocks' forward passes (see the block comment above); each returns x's shape. key
 * (NULL: the global random state) seeds the dropout masks when cfg->dropout > 0. */
pn_array *pn_nn_transformer_encoder_layer(pn_array *x, pn_attention_mask mask,
                                          const pn_params *params, const char *prefix,
                                          const pn_transformer_config *cfg, pn_array *key);
pn_array *pn_nn_transformer_decoder_layer(pn_array *x, pn_array *memory,
                                          pn_attention_mask x_mask,
                                          pn_attention_mask memory_mask,
                                          const pn_params *params, const char *prefix,
                                          const pn_transformer_config *cfg, pn_array *key);
/* cfg->num_encoder_layers layers, then the final layer norm "ln". */
pn_array *pn_nn_transformer_encoder(pn_array *x, pn_attention_mask mask,
                                    const pn_params *params, const char *prefix,
                                    const pn_transformer_config *cfg, pn_array *key);
/* cfg->num_decoder_layers layers over memory, then the final layer norm "ln". */
pn_array *pn_nn_transformer_decoder(pn_array *x, pn_array *memory, pn_attention_mask x_mask,
                                    pn_attention_mask memory_mask, const pn_params *params,
                                    const char *prefix, const pn_transformer_config *cfg,
                                    pn_array *key);
/* decoder(tgt, encoder(src, src_mask), tgt_mask, memory_mask): (B, L_tgt, dims). */
pn_array *pn_nn_transformer(pn_array *src, pn_array *tgt, pn_attention_mask src_mask,
                            pn_attention_mask tgt_mask, pn_attention_mask memory_mask,
                            const pn_params *params, const char *prefix,
                            const pn_transformer_config *cfg, pn_array *key);

/* ───────────────────────────── optimizers ───────────────────────────── */

/* A learning-rate schedule: the rate at step (0-based). */
typedef struct pn_schedule pn_schedule;
pn_schedule *pn_schedule_constant(double lr);
pn_schedule *pn_schedule_step_decay(double init, double decay_rate, int64_t step_size);
pn_schedule *pn_schedule_exponential_decay(double init, double decay_rate);
pn_schedule *pn_schedule_cosine_decay(double init, int64_t decay_steps, double end);
pn_schedule *pn_schedule_linear(double init, double end, int64_t steps);
/* Runs a for steps before boundary, then b from step boundary on (b sees steps counted
 * from the boundary); takes ownership of a and b. */
pn_schedule *pn_schedule_join(pn_schedule *a, pn_schedule *b, int64_t boundary);
double pn_schedule_at(const pn_schedule *s, int64_t step);
void pn_schedule_free(pn_schedule *s);

typedef struct pn_optimizer pn_optimizer;

pn_optimizer *pn_optim_sgd(double lr, double momentum, double weight_decay, double dampening,
                           bool nesterov);
pn_optimizer *pn_optim_adam(double lr, double beta1, double beta2, double eps,
                            bool bias_correction);
pn_optimizer *pn_optim_adamw(double lr, double beta1, double beta2, double eps,
                             double weight_decay, bool bias_correction);
pn_optimizer *pn_optim_rmsprop(double lr, double alpha, double eps);
pn_optimizer *pn_optim_adagrad(double lr, double eps);
pn_optimizer *pn_optim_adadelta(double lr, double rho, double eps);
pn_optimizer *pn_optim_adamax(double lr, double beta1, double beta2, double eps);
pn_optimizer *pn_optim_lion(double lr, double beta1, double beta2, double weight_decay);
/* Uses s for the learning rate from now on (takes ownership). */
void pn_optimizer_set_schedule(pn_optimizer *o, pn_schedule *s);
/* The learning rate of the next step. */
double pn_optimizer_learning_rate(const pn_optimizer *o);
/* One step: replaces every parameter that has a gradient of the same name by its updated
 * value (lazy; evaluate params and state together). Returns 0 or -1. */
int pn_optimizer_update(pn_optimizer *o, pn_params *params, const pn_params *grads);
/* ── compile: array hyper-parameters (issue 4) ── As pn_optimizer_update, with the learning
 * rate given as a floating-point array of one element (e.g. a schedule of the step computed with
 * ops) and the step counted as an array: state "step" becomes step + 1 lazily, and Adam's bias
 * correction reads it as an array, so the whole update can be traced by mx.compile (MLX keeps
 * step and learning rate as arrays in its state). The rules compose ops (no fused kernel).
 * Groups use lr too. Adafactor refuses (its step size needs the step on the host). 0 or -1. */
int pn_optimizer_update_arrays(pn_optimizer *o, pn_params *params, const pn_params *grads,
                               pn_array *lr);
/* The optimizer's state ("step", "<param>.m", ...) — borrowed; save/load it for resuming. */
pn_params *pn_optimizer_state(pn_optimizer *o);
void pn_optimizer_free(pn_optimizer *o);

/* Adafactor, Muon and parameter groups. */
/* Adafactor as mlx.optimizers.Adafactor: factored second moments (state "<p>.exp_avg_sq_row",
 * shape[:-1], and "<p>.exp_avg_sq_col", shape[:-2] + shape[-1:]) for parameters with ndim >= 2,
 * "<p>.exp_avg_sq" otherwise, "<p>.exp_avg" when beta_1 is not NAN (NAN = MLX's None); the
 * update is clipped to RMS clip_threshold. relative_step: the step size is
 * min(warmup_init ? 1e-6 t : 1e-2, 1/sqrt(t)) and lr is ignored (it may be NAN); else lr.
 * scale_parameter multiplies it by max(eps2, RMS(param)). MLX's defaults: eps1 1e-30, eps2
 * 1e-3, clip_threshold 1, decay_rate -0.8, beta_1 NAN, weight_decay 0, true, true, false.
 * NULL (invalid argument) when lr is NAN without relative_step or clip_threshold <= 0. */
pn_optimizer *pn_optim_adafactor(double lr, double eps1, double eps2, double clip_threshold,
                                 double decay_rate, double beta_1, double weight_decay,
                                 bool scale_parameter, bool relative_step, bool warmup_init);
/* Muon as mlx.optimizers.Muon: v = momentum v + (1 - momentum)(g + weight_decay p), Nesterov
 * by default; for ndim >= 2 the update is orthogonalised by ns_steps Newton-Schulz iterations
 * (coefficients 3.4445, -4.7750, 2.0315; beyond 2-d on the (shape[0], -1) matrix) and the step
 * scaled by sqrt(max(1, shape[-2] / shape[-1])); ndim < 2 takes the momentum step. State
 * "<p>.v". MLX's defaults: momentum 0.95, weight_decay 0.01, nesterov true, ns_steps 5. NULL
 * (invalid argument) when ns_steps < 0. */
pn_optimizer *pn_optim_muon(double lr, double momentum, double weight_decay, bool nesterov,
                            int ns_steps);
/* Parameter groups: parameters whose name is one of prefixes[0..n) or lies under one
 * ("layers.0" matches "layers.0.weight", not "layers.01.weight"; "" matches every name) are
 * updated with rule's update rule, hyperparameters and schedule instead of o's. Groups are
 * tried in the order added and the first match wins; other parameters use o's own rule. o
 * takes ownership of rule, also on failure (unless rule is o). All slots live in o's state
 * ("<param>.<slot>") beside one shared "step", so saving pn_optimizer_state(o) saves the
 * groups too; rule's own state stays unused and its step follows o's. Returns the group's
 * index (0, 1, ...), or -1 (invalid argument: NULL, rule == o, rule has groups, bad prefixes). */
int pn_optimizer_add_group(pn_optimizer *o, const char *const *prefixes, int n, pn_optimizer *rule);
/* The optimizer of group i of o (borrowed; e.g. to set its schedule), or NULL. */
pn_optimizer *pn_optimizer_group(pn_optimizer *o, int i);
/* Scales grads so that their global L2 norm is at most max_norm; returns the norm before
 * clipping (a scalar array) or NULL. */
pn_array *pn_clip_grad_norm(pn_params *grads, double max_norm);

/* ───────────────────────────── files ───────────────────────────── */

/* Saves / loads a parameter map as .safetensors or .npz (by extension). Loading treats the
 * file as hostile: every offset and size is checked. Return 0 / a new map, or -1 / NULL with
 * PN_ERR_IO. */
int pn_save_params(const char *path, const pn_params *p);
pn_params *pn_load_params(const char *path);
/* pn_save_params to a .npz whose members are deflated (numpy.savez_compressed's files; a
 * member that would not shrink is stored; a build without zlib stores every member). */
int pn_savez_compressed(const char *path, const pn_params *p);
/* One array as .npy. */
int pn_save_npy(const char *path, pn_array *a);
pn_array *pn_load_npy(const char *path);

/* GGUF (ggml's format, as mlx.core.load / save_gguf). Tensor types f32, f16, bf16, i8, i16,
 * i32, i64 and f64 load and save (MLX 0.32 saves only f32, f16, i8, i16, i32); quantized
 * tensor types are refused with PN_ERR_IO. The GGUF extents (fastest-varying first) are
 * reversed into row-major shapes. Metadata values are arrays (0-d or 1-d; bool, integer,
 * float32 or float64: GGUF's scalar and array values), strings, or lists of strings. */
typedef struct pn_gguf_meta pn_gguf_meta;
pn_gguf_meta *pn_gguf_meta_new(void);
void pn_gguf_meta_free(pn_gguf_meta *m);
/* Entries in insertion (file) order; setting an existing key replaces its value. */
int pn_gguf_meta_count(const pn_gguf_meta *m);
const char *pn_gguf_meta_key(const pn_gguf_meta *m, int i);
/* Entry i's array (borrowed), or NULL when it holds strings. */
pn_array *pn_gguf_meta_array(const pn_gguf_meta *m, int i);
/* Entry i's strings (borrowed, *strs gets them) and whether it is a list: the count, or -1
 * when the entry holds an array. */
int64_t pn_gguf_meta_strings(const pn_gguf_meta *m, int i, const char *const **strs,
                             bool *is_list);
/* Stores a (retained) / n copied strings (a single string: n == 1, is_list false). 0 or -1. */
int pn_gguf_meta_set_array(pn_gguf_meta *m, const char *key, pn_array *a);
int pn_gguf_meta_set_strings(pn_gguf_meta *m, const char *key, const char *const *strs,
                             int64_t n, bool is_list);
/* Loads the tensors of a .gguf file (hostile input: every count, length, extent and offset is
 * checked) in file order; *metadata (if non-NULL) receives a new map the caller frees. NULL
 * with PN_ERR_IO on a malformed file. */
pn_params *pn_load_gguf(const char *path, pn_gguf_meta **metadata);
/* Saves arrays (and metadata, may be NULL) as GGUF version 3, data aligned to 32 bytes.
 * Returns 0, or -1 (invalid argument for an unsupported dtype, PN_ERR_IO). */
int pn_save_gguf(const char *path, const pn_params *arrays, const pn_gguf_meta *metadata);
/* p as .safetensors at path (whatever its extension) with metadata (may be NULL; single
 * strings only, written as the header's "__metadata__"; another value is
 * PN_ERR_INVALID_ARGUMENT). 0, or -1 with an error. */
int pn_save_safetensors(const char *path, const pn_params *p, const pn_gguf_meta *metadata);

/* Files without a path (streams, memory: Python's file objects). A writer takes a file's
 * bytes in order: write(ctx, data, n) returns 0, or -1 to stop (the save then fails with the
 * error the writer set, else PN_ERR_IO). */
typedef struct pn_writer {
    int (*write)(void *ctx, const void *data, size_t n);
    void *ctx;
} pn_writer;
typedef enum pn_file_format {
    PN_FORMAT_NPY,             /* one array */
    PN_FORMAT_NPZ,             /* numpy.savez */
    PN_FORMAT_NPZ_COMPRESSED,  /* numpy.savez_compressed (deflated members) */
    PN_FORMAT_SAFETENSORS,
    PN_FORMAT_GGUF,
} pn_file_format;
/* Saves arrays as format through w, the bytes the path savers write (NPY: arrays holds
 * exactly one array, its name unused; metadata: may be NULL; GGUF's, or safetensors' header
 * "__metadata__" (single strings only, else PN_ERR_INVALID_ARGUMENT); ignored otherwise).
 * 0, or -1 with an error. */
int pn_save_to(const pn_writer *w, pn_file_format format, const pn_params *arrays,
               const pn_gguf_meta *metadata);
/* Loads a whole file image of format from data[0, size), checked as the path loaders check a
 * file; name (may be NULL) names it in errors (NPY: a map of one array named ""; metadata:
 * may be NULL; GGUF's as pn_load_gguf, safetensors' "__metadata__" string values (NULL when
 * the file has none), none for the other formats). A new map, or NULL with an error
 * (PN_ERR_IO for a malformed image). */
pn_params *pn_load_from(const void *data, size_t size, pn_file_format format, const char *name,
                        pn_gguf_meta **metadata);

#ifdef __cplusplus
}
#endif
#endif /* PONTE_H */
