/* test_backends.c — the backend conformance test (as ggml's test-backend-ops): every op runs
 * forward, and its vjp where it has one, on the CPU and on the GPU (the simulated runtime in
 * CI, the real device in scripts/gpu-check) over the same random inputs, and the results
 * must agree. A GPU run that fell back to a CPU kernel counts as a failure unless its case
 * says cpu_only_ok. Skips when the build has no usable GPU. */
#include "core/core.h"
#include "harness.h"
#include "io/registry.h"
#include "ops/optim.h"
#include "transforms/trace.h"

#include <float.h>
#include <string.h>

typedef struct in_spec {
    int ndim;
    int64_t shape[4];
    pn_dtype dtype;
    double lo, hi;
} in_spec;

typedef pn_array *(*case_fn)(pn_array *const *x);

typedef struct op_case {
    const char *name;
    case_fn fn;
    int nin;
    in_spec in[4];
    bool grad; /* compare the vjp too (float outputs of float inputs) */
    bool cpu_only_ok;
    /* forward compared at the gradients' tolerance: results that legitimately round
     * differently per device (a dequantized weight held in the activation's half dtype before
     * the GEMM; a quantized value that cancels its group's bias to ~0) */
    bool loose;
} op_case;

/* The CPU, or the GPU the process defaults to (PONTE_DEVICE=gpu:k runs the cases on gpu:k). */
static pn_device dev_of(pn_device_type t)
{
    pn_device d = pn_default_device();
    return (pn_device){.type = t, .index = t == PN_GPU && d.type == PN_GPU ? d.index : 0};
}

/* Runs fn on device t: the output, evaluated (NULL on error). With grad, also the vjp with
 * cotangent cot into grads. */
typedef struct closure_ctx {
    case_fn fn;
} closure_ctx;

static int call_case(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    out[0] = ((closure_ctx *)ctx)->fn(in);
    *nout = 1;
    return out[0] ? 0 : -1;
}

static pn_array *run_on(pn_device_type t, const op_case *c, pn_array *const *x, pn_array *cot,
                        pn_array **grads)
{
    if (pn_stream_push(pn_default_stream(dev_of(t)))) return NULL;
    pn_array *y = NULL;
    if (cot) {
        closure_ctx ctx = {c->fn};
        pn_closure *f = pn_closure_new(call_case, &ctx, NULL);
        int nout = 0;
        pn_array *outs[1] = {NULL};
        if (f && pn_vjp(f, c->nin, x, 1, &cot, &nout, outs, grads) == 0) y = outs[0];
        pn_closure_release(f);
    } else {
        y = c->fn(x);
    }
    pn_stream_pop();
    if (y && pn_eval(&y, 1)) y = NULL;
    if (y && cot && pn_eval(grads, c->nin)) y = NULL;
    return y;
}

static double case_tol(pn_dtype t)
{
    if (t == PN_FLOAT64) return 1e-9;
    if (t == PN_FLOAT32 || t == PN_COMPLEX64) return 2e-5;
    if (pnC_is_half(t)) return 1e-2;
    return 0; /* integers and bool: exact */
}

/* Compares two evaluated arrays of the same shape elementwise (NaN == NaN), relative to each
 * element and to the array's scale. loose: gradients, which sum long products in another
 * order on each device. */
static int compare(const char *what, pn_array *gpu, pn_array *cpu, bool loose)
{
    if (!gpu || !cpu) return 0;
    if (gpu->dtype != cpu->dtype || gpu->ndim != cpu->ndim || gpu->size != cpu->size) {
        test_fail(__FILE__, __LINE__, "%s: dtype/shape differ between GPU and CPU", what);
        return 0;
    }
    double *g = test_to_f64(gpu), *c = test_to_f64(cpu);
    if (!g || !c) {
        free(g);
        free(c);
        return 0;
    }
    double tol = case_tol(cpu->dtype) * (loose ? 5 : 1), scale = 0;
    for (int64_t i = 0; i < cpu->size; i++)
        if (isfinite(c[i]) && fabs(c[i]) > scale) scale = fabs(c[i]);
    int ok = 1;
    for (int64_t i = 0; i < cpu->size && ok; i++) {
        bool both_nan = isnan(g[i]) && isnan(c[i]);
        bool same_inf = isinf(g[i]) && g[i] == c[i];
        double err = fabs(g[i] - c[i]);
        /* Near-zero elements of sums (products, transforms) carry the rounding of the large
         * terms: a few ulps of the array's scale, in whatever order each device adds. */
        double rel_scale = (loose ? 1e-1 : 5e-2) * scale;
        if (!both_nan && !same_inf && !(err <= tol * (fabs(c[i]) + rel_scale) + tol * 1e-6)) {
            test_fail(__FILE__, __LINE__, "%s: element %lld: GPU %.9g, CPU %.9g", what,
                      (long long)i, g[i], c[i]);
            ok = 0;
        }
    }
    free(g);
    free(c);
    return ok;
}

static void run_case(const op_case *c)
{
    pn_scope_push();
    pn_array *x[4] = {NULL};
    for (int i = 0; i < c->nin; i++)
        x[i] = test_random_array(c->in[i].shape, c->in[i].ndim, c->in[i].dtype, c->in[i].lo,
                                 c->in[i].hi);
    pn_array *cpu_grads[4] = {NULL}, *gpu_grads[4] = {NULL}, *cot = NULL;
    if (c->grad) {
        pn_array *probe = run_on(PN_CPU, c, x, NULL, NULL);
        if (probe) cot = test_random_array(probe->shape, probe->ndim, probe->dtype, -1, 1);
    }
    pn_array *cpu = run_on(PN_CPU, c, x, cot, cpu_grads);
    int64_t before = pnC_gpu_fallback_count();
    pn_array *gpu = run_on(PN_GPU, c, x, cot, gpu_grads);
    int64_t fell_back = pnC_gpu_fallback_count() - before;
    if (!cpu || !gpu) {
        test_fail(__FILE__, __LINE__, "%s: %s failed: %s", c->name, cpu ? "GPU" : "CPU",
                  pn_last_error_message());
        pn_clear_error();
    } else {
        /* the GPU result really comes from the device */
        CHECK_MSG(gpu->buf && gpu->buf->device && gpu->buf->device_valid,
                  "%s: the GPU result has no device copy", c->name);
        compare(c->name, gpu, cpu, c->loose);
        for (int i = 0; cot && i < c->nin; i++) {
            char what[96];
            snprintf(what, sizeof what, "%s vjp[%d]", c->name, i);
            if (cpu_grads[i] && gpu_grads[i]) compare(what, gpu_grads[i], cpu_grads[i], true);
        }
    }
    if (fell_back && !c->cpu_only_ok)
        test_fail(__FILE__, __LINE__, "%s: %lld GPU evaluations fell back to the CPU "
                  "(run with PONTE_GPU_FALLBACK_LOG=1 to see which primitives)",
                  c->name, (long long)fell_back);
    pn_scope_pop();
}

/* ───────────────────────────── the cases ───────────────────────────── */

#define F32 PN_FLOAT32
#define SH2 2, {7, 33}
#define SH3 3, {3, 5, 17}
#define SH1 1, {33}

/* unary ops over floats, with a domain */
#define UNARY_CASES(X)                                                                         \
    X(abs, -3, 3, 1) X(negative, -3, 3, 1) X(sign, -3, 3, 0) X(sqrt, 0.1, 4, 1)               \
    X(rsqrt, 0.1, 4, 1) X(square, -3, 3, 1) X(reciprocal, 0.5, 3, 1) X(exp, -3, 3, 1)          \
    X(expm1, -2, 2, 1) X(log, 0.1, 4, 1) X(log1p, -0.5, 3, 1) X(log2, 0.1, 4, 1)               \
    X(log10, 0.1, 4, 1) X(sin, -3, 3, 1) X(cos, -3, 3, 1) X(tan, -1, 1, 1)                     \
    X(arcsin, -0.9, 0.9, 1) X(arccos, -0.9, 0.9, 1) X(arctan, -3, 3, 1) X(sinh, -2, 2, 1)      \
    X(cosh, -2, 2, 1) X(tanh, -3, 3, 1) X(arcsinh, -3, 3, 1) X(arccosh, 1.1, 4, 1)             \
    X(arctanh, -0.9, 0.9, 1) X(floor, -3, 3, 0) X(ceil, -3, 3, 0) X(sigmoid, -4, 4, 1)         \
    X(erf, -2, 2, 1) X(erfinv, -0.9, 0.9, 1) X(isnan, -3, 3, 0) X(isfinite, -3, 3, 0)          \
    X(logical_not, -1, 1, 0)

#define BINARY_CASES(X)                                                                        \
    X(add, 1) X(subtract, 1) X(multiply, 1) X(divide, 1) X(maximum, 1) X(minimum, 1)           \
    X(power, 1) X(arctan2, 1) X(logaddexp, 1) X(floor_divide, 0) X(remainder, 0)               \
    X(equal, 0) X(not_equal, 0) X(less, 0) X(less_equal, 0) X(greater, 0)                      \
    X(greater_equal, 0) X(logical_and, 0) X(logical_or, 0)

#define DEF_UNARY(NM, LO, HI, G)                                                               \
    static pn_array *u_##NM(pn_array *const *x) { return pn_##NM(x[0]); }
UNARY_CASES(DEF_UNARY)
#define DEF_BINARY(NM, G)                                                                      \
    static pn_array *b_##NM(pn_array *const *x) { return pn_##NM(x[0], x[1]); }
BINARY_CASES(DEF_BINARY)

static pn_array *c_divmod(pn_array *const *x)
{
    pn_array *qr[2] = {NULL, NULL};
    if (pn_divmod(x[0], x[1], qr)) return NULL;
    return pn_add(pn_multiply(qr[0], pn_weak_int(1000)), qr[1]);
}
static pn_array *c_shifts(pn_array *const *x)
{
    pn_array *s = pn_remainder(x[1], pn_weak_int(10)); /* counts 0..9 on 8-bit values */
    return pn_bitwise_xor(pn_left_shift(x[0], s), pn_right_shift(x[0], s));
}
static pn_array *c_int_unary(pn_array *const *x)
{
    return pn_add(pn_add(pn_abs(x[0]), pn_sign(x[0])),
                  pn_add(pn_square(x[0]), pn_bitwise_invert(pn_negative(x[0]))));
}
static pn_array *c_nan_to_num(pn_array *const *x)
{
    pn_array *y = pn_divide(pn_log(x[0]), x[0]); /* NaN below 0, -inf at 0 */
    return pn_nan_to_num(y, 7, NULL, NULL);
}
static pn_array *c_misaligned_sin(pn_array *const *x)
{
    return pn_sin(pn_slice(x[0], (int64_t[]){1}, (int64_t[]){33}, NULL, 1));
}
static pn_array *c_complex(pn_array *const *x)
{
    return pn_add(pn_multiply(pn_exp(x[0]), x[1]), pn_divide(pn_sqrt(x[1]), x[0]));
}
static pn_array *c_complex_conj(pn_array *const *x)
{
    return pn_multiply(pn_conjugate(x[0]), pn_add(x[1], pn_conjugate(x[1])));
}
static pn_array *c_bitwise(pn_array *const *x)
{
    pn_array *a = pn_bitwise_and(x[0], x[1]), *o = pn_bitwise_or(x[0], pn_negative(x[1]));
    return pn_bitwise_xor(pn_add(a, pn_weak_int(3)), o);
}
/* infinities of both signs and NaNs: 1 / floor(x) and -1 / floor(x) over x in (-1.5, 1.5),
 * log of negatives; isinf + 2 isposinf + 4 isneginf + 8 isnan */
static pn_array *c_infs(pn_array *const *x)
{
    pn_array *f = pn_floor(x[0]), *p = pn_divide(pn_weak_float(1), f), *n = pn_divide(pn_weak_float(-1), f);
    pn_array *y = pn_where(pn_greater(x[0], pn_weak_float(0.7)), pn_log(pn_negative(x[0])), p);
    pn_array *bits[4] = {pn_isinf(y), pn_isposinf(y), pn_isneginf(n), pn_isnan(y)};
    pn_array *acc = pn_astype(bits[0], PN_INT32);
    for (int k = 1; k < 4; k++) acc = pn_add(acc, pn_multiply(pn_astype(bits[k], PN_INT32), pn_weak_int(1 << k)));
    return acc;
}
/* stop_gradient between two uses of x: its value flows, its gradient does not */
static pn_array *c_stop_gradient(pn_array *const *x)
{
    return pn_multiply(pn_stop_gradient(pn_sin(x[0])), pn_cos(x[0]));
}
static pn_array *c_where(pn_array *const *x)
{
    return pn_where(pn_greater(x[0], pn_weak_float(0)), x[1], x[2]);
}
/* mx.compile: the CPU and the GPU each run the chain as one fused Compiled node (the closure
 * lives for the whole run). */
static int compiled_chain(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_array *w = pn_where(pn_greater(in[0], in[1]), in[0], pn_multiply(in[0], in[1])); /* no constants: the tape holds no arrays */
    out[0] = pn_subtract(pn_multiply(pn_tanh(pn_add(w, in[1])), in[1]), pn_exp(in[0]));
    *nout = 1;
    return out[0] ? 0 : -1;
}
static pn_array *c_compiled(pn_array *const *x)
{
    static pn_closure *c;
    if (!c) {
        pn_closure *f = pn_closure_new(compiled_chain, NULL, NULL);
        c = f ? pn_compile(f, false) : NULL;
        pn_closure_release(f);
    }
    pn_array *out[PN_MAX_OUTPUTS];
    int n = 0;
    return c && pn_closure_call(c, 2, x, &n, out) == 0 ? out[0] : NULL;
}
/* mx.compile programs that the GPU runs as one fused launch (backend/cuda/fused.cu): each
 * call compiles afresh, so nothing (the tape's constants) outlives the case. */
static pn_array *call_compiled(pn_fn fn, int nin, pn_array *const *x)
{
    pn_closure *f = pn_closure_new(fn, NULL, NULL), *c = f ? pn_compile(f, false) : NULL;
    pn_array *out[PN_MAX_OUTPUTS];
    int n = 0;
    pn_array *y = c && pn_closure_call(c, nin, x, &n, out) == 0 ? out[0] : NULL;
    pn_closure_release(c), pn_closure_release(f);
    return y;
}
#define COMPILED_CASE(NM, NIN, EXPR)                                                           \
    static int cf_##NM(void *ctx, int nin, pn_array *const *x, int *nout, pn_array **out)      \
    {                                                                                          \
        (void)ctx, (void)nin;                                                                  \
        out[0] = (EXPR);                                                                       \
        *nout = 1;                                                                             \
        return out[0] ? 0 : -1;                                                                \
    }                                                                                          \
    static pn_array *c_##NM(pn_array *const *x) { return call_compiled(cf_##NM, NIN, x); }
#define WF pn_weak_float
COMPILED_CASE(cgelu, 1,
              pn_multiply(pn_multiply(WF(0.5), x[0]),
                          pn_add(WF(1), pn_tanh(pn_multiply(pn_add(x[0], pn_multiply(WF(0.044715), pn_power(x[0], WF(3)))),
                                                            WF(0.7978845608028654))))))
COMPILED_CASE(cbcast, 2, pn_subtract(pn_add(pn_multiply(x[0], x[1]), pn_exp(x[1])), pn_sin(x[0])))
COMPILED_CASE(cwhere, 2, pn_add(pn_where(pn_logical_and(pn_greater(x[0], x[1]), pn_less(x[0], WF(0.7))),
                                         pn_multiply(x[0], x[1]), pn_tanh(x[1])), x[0]))
COMPILED_CASE(castype, 2, pn_add(pn_astype(pn_astype(pn_multiply(x[0], x[1]), PN_BFLOAT16), PN_FLOAT32), x[0]))
#undef WF
static pn_array *c_astype_f16(pn_array *const *x) { return pn_astype(x[0], PN_FLOAT16); }
static pn_array *c_astype_i32(pn_array *const *x) { return pn_astype(x[0], PN_INT32); }
static pn_array *c_astype_bf16(pn_array *const *x) { return pn_astype(x[0], PN_BFLOAT16); }
static pn_array *c_astype_f64(pn_array *const *x) { return pn_astype(x[0], PN_FLOAT64); }
static pn_array *c_to_fp8(pn_array *const *x) { return pn_to_fp8(x[0]); }
static pn_array *c_to_fp8_t(pn_array *const *x) { return pn_to_fp8(pn_swapaxes(x[0], 0, 1)); }
static pn_array *c_clip(pn_array *const *x) { return pn_clip(x[0], pn_weak_float(-1), pn_weak_float(0.5)); }
static pn_array *c_round(pn_array *const *x) { return pn_round(x[0], 1); }
static pn_array *c_isclose(pn_array *const *x) { return pn_isclose(x[0], x[1], 1e-5, 0.3, false); }

static pn_array *c_sum_all(pn_array *const *x) { return pn_sum(x[0], NULL, 0, false); }
static pn_array *c_sum_ax1(pn_array *const *x) { return pn_sum(x[0], (int[]){1}, 1, true); }
static pn_array *c_sum_ax02(pn_array *const *x) { return pn_sum(x[0], (int[]){0, 2}, 2, false); }
static pn_array *c_prod(pn_array *const *x) { return pn_prod(x[0], (int[]){-1}, 1, false); }
static pn_array *c_max(pn_array *const *x) { return pn_max(x[0], (int[]){0}, 1, false); }
static pn_array *c_min(pn_array *const *x) { return pn_min(x[0], (int[]){-1}, 1, false); }
static pn_array *c_mean(pn_array *const *x) { return pn_mean(x[0], (int[]){1}, 1, false); }
static pn_array *c_var(pn_array *const *x) { return pn_var(x[0], (int[]){-1}, 1, false, 1); }
static pn_array *c_all(pn_array *const *x) { return pn_all(pn_greater(x[0], pn_weak_float(-0.9)), (int[]){1}, 1, false); }
static pn_array *c_any(pn_array *const *x) { return pn_any(pn_greater(x[0], pn_weak_float(0.9)), (int[]){0}, 1, false); }
static pn_array *c_argmax(pn_array *const *x) { return pn_argmax(x[0], 1, false); }
static pn_array *c_argmin(pn_array *const *x) { return pn_argmin(x[0], 0, true); }
static pn_array *c_logsumexp(pn_array *const *x) { return pn_logsumexp(x[0], (int[]){-1}, 1, false); }
static pn_array *c_softmax(pn_array *const *x) { return pn_softmax(x[0], (int[]){-1}, 1, false); }
static pn_array *c_softmax0(pn_array *const *x) { return pn_softmax(x[0], (int[]){0}, 1, true); }
/* fused attention (ScaledDotProductAttention and its Vjp): causal, a bool mask of a fixed
 * pattern (some rows dropped whole), grouped-query heads */
static pn_array *c_sdpa_causal(pn_array *const *x)
{
    return pn_fast_scaled_dot_product_attention(x[0], x[1], x[2], 0.4, "causal", NULL);
}
static pn_array *c_sdpa_bool(pn_array *const *x)
{
    int64_t lq = pn_dim(x[0], 2), lk = pn_dim(x[1], 2);
    pn_array *pat = pn_sin(pn_multiply(pn_arange(0, (double)(lq * lk), 1, F32), pn_weak_float(1.7)));
    pn_array *m = pn_reshape(pn_greater(pat, pn_weak_float(0.2)), (int64_t[]){lq, lk}, 2);
    return pn_fast_scaled_dot_product_attention(x[0], x[1], x[2], 0.4, "", m);
}
static pn_array *c_sdpa_plain(pn_array *const *x)
{
    return pn_fast_scaled_dot_product_attention(x[0], x[1], x[2], 0.3, "", NULL);
}
/* attention sinks: the forward's lse output scales out, so the Vjp takes lse's cotangent */
static pn_array *c_sdpa_sinks_causal(pn_array *const *x)
{
    return pn_fast_scaled_dot_product_attention_sinks(x[0], x[1], x[2], 0.4, "causal", NULL, x[3]);
}
/* an additive mask (Lq, Lk) of a fixed pattern in [-1, 1] with row 1 all `fill` and row 3
 * alternately -inf and fill (finfo.min when fill is -inf), in q's dtype */
static pn_array *c_sdpa_rows_of(pn_array *const *x, double fill)
{
    int64_t lq = pn_dim(x[0], 2), lk = pn_dim(x[1], 2);
    double low = isfinite(fill) ? fill : pn_array_dtype(x[0]) == PN_FLOAT64 ? -DBL_MAX : -FLT_MAX;
    double *m = malloc(sizeof(double) * (size_t)(lq * lk));
    if (!m) return NULL;
    for (int64_t i = 0; i < lq; i++)
        for (int64_t j = 0; j < lk; j++)
            m[i * lk + j] = i == 1 ? fill : i == 3 ? (j % 2 ? -INFINITY : low) : sin(1.7 * (double)(i * lk + j));
    pn_array *a = pn_astype(pn_array_from_data(m, (int64_t[]){lq, lk}, 2, PN_FLOAT64), pn_array_dtype(x[0]));
    free(m);
    return pn_fast_scaled_dot_product_attention(x[0], x[1], x[2], 0.4, "", a);
}
/* rows of finfo.min (its dtype's), -1e9 or -inf */
static pn_array *c_sdpa_min_rows(pn_array *const *x)
{
    return c_sdpa_rows_of(x, pn_array_dtype(x[0]) == PN_FLOAT64 ? -DBL_MAX : -FLT_MAX);
}
static pn_array *c_sdpa_1e9_rows(pn_array *const *x) { return c_sdpa_rows_of(x, -1e9); }
static pn_array *c_sdpa_inf_rows(pn_array *const *x) { return c_sdpa_rows_of(x, -INFINITY); }
/* multivariate_normal (its matrix square root, SqrtSVD, on each device) of a batch of
 * covariances x x^T + I, with a fixed key: the same normal bits on both devices */
static pn_array *c_mvn(pn_array *const *x)
{
    pn_array *cov = pn_add(pn_matmul(x[0], pn_swapaxes(x[0], -1, -2)), pn_eye(pn_dim(x[0], -1), pn_dim(x[0], -1), 0, F32));
    pn_array *mean = pn_zeros((int64_t[]){pn_dim(x[0], -1)}, 1, F32);
    return pn_random_multivariate_normal(mean, cov, (int64_t[]){4, pn_dim(x[0], 0)}, 2, F32, pn_random_key(7));
}
static pn_array *c_log_softmax(pn_array *const *x) { return pn_log_softmax(x[0], (int[]){-1}, 1); }
static pn_array *c_cumsum(pn_array *const *x) { return pn_cumsum(x[0], 1, false, true); }
static pn_array *c_cumsum_rev(pn_array *const *x) { return pn_cumsum(x[0], 0, true, false); }
static pn_array *c_cumprod(pn_array *const *x) { return pn_cumprod(x[0], -1, false, true); }
static pn_array *c_cummax(pn_array *const *x) { return pn_cummax(x[0], -1, false, true); }
static pn_array *c_logcumsumexp(pn_array *const *x) { return pn_logcumsumexp(x[0], -1, false, true); }

/* FFT (src/ops/fft.c): complex results compared as [real, imag] along the last axis; complex
 * inputs built from two float inputs. */
static pn_array *fft_ri(pn_array *y)
{
    pn_array *p[2] = {pn_real(y), pn_imag(y)};
    return pn_concatenate(p, 2, -1);
}
static pn_array *fft_cx(pn_array *const *x) { return pn_add(x[0], pn_multiply(x[1], pn_scalar_complex(0, 1))); }
static pn_array *c_fft(pn_array *const *x) { return fft_ri(pn_fft_fft(x[0], 0, -1)); }
static pn_array *c_fft2_pad(pn_array *const *x) { return fft_ri(pn_fft_fftn(fft_cx(x), (int64_t[]){6, 16}, (int[]){1, 2}, 2)); }
static pn_array *c_ifftn(pn_array *const *x) { return fft_ri(pn_fft_ifftn(fft_cx(x), NULL, NULL, 0)); }
static pn_array *c_rfft(pn_array *const *x) { return fft_ri(pn_fft_rfft(x[0], 0, 1)); }
static pn_array *c_rfft2_t(pn_array *const *x) { return fft_ri(pn_fft_rfft2(pn_transpose(x[0], NULL, 0), NULL, NULL)); }
static pn_array *c_irfftn(pn_array *const *x) { return pn_fft_irfftn(fft_cx(x), NULL, (int[]){0, 2}, 2); }
static pn_array *c_irfft_odd(pn_array *const *x) { return pn_fft_irfft(fft_cx(x), 9, 0); }

static pn_array *c_transpose_add(pn_array *const *x) { return pn_add(pn_transpose(x[0], NULL, 0), pn_weak_float(1)); }
static pn_array *c_reshape_t(pn_array *const *x) { return pn_reshape(pn_transpose(x[0], NULL, 0), (int64_t[]){11, 21}, 2); }
static pn_array *c_slice(pn_array *const *x)
{
    return pn_copy(pn_slice(x[0], (int64_t[]){1, 30}, (int64_t[]){6, 2}, (int64_t[]){2, -3}, 2));
}
static pn_array *c_slice_update(pn_array *const *x)
{
    return pn_slice_update(x[0], x[1], (int64_t[]){2, 3}, (int64_t[]){5, 13}, NULL, 2);
}
static pn_array *c_concat(pn_array *const *x)
{
    pn_array *parts[2] = {x[0], pn_transpose(x[1], NULL, 0)};
    return pn_concatenate(parts, 2, 0);
}
/* Split (one multi-output node) with pieces reordered and scaled; "backwards" indices make
 * overlapping pieces (the vjp's non-tiled path). */
static pn_array *split_join(pn_array *a, const int64_t *idx)
{
    pn_array *p[3] = {NULL, NULL, NULL};
    if (pn_split(a, idx, 2, 1, p)) return NULL;
    pn_array *parts[3] = {p[2], pn_multiply(p[0], pn_weak_float(3)), p[1]};
    return pn_concatenate(parts, 3, 1);
}
static pn_array *c_split(pn_array *const *x) { return split_join(x[0], (int64_t[]){5, 20}); }
static pn_array *c_split_back(pn_array *const *x) { return split_join(x[0], (int64_t[]){20, 9}); }
static pn_array *c_pad(pn_array *const *x)
{
    return pn_pad(x[0], (int[]){0, 1}, (int64_t[]){1, 2}, (int64_t[]){3, 0}, 2, pn_weak_float(0.5),
                  PN_PAD_CONSTANT);
}
static pn_array *c_broadcast(pn_array *const *x) { return pn_multiply(x[0], x[1]); }
static pn_array *c_tril(pn_array *const *x) { return pn_tril(x[0], 1); }
static pn_array *c_diagonal(pn_array *const *x) { return pn_copy(pn_diagonal(x[0], 1, 0, 1)); }
static pn_array *c_arange(pn_array *const *x) { return pn_add(x[0], pn_arange(0, 33, 1, F32)); }
static pn_array *c_linspace(pn_array *const *x) { return pn_add(x[0], pn_linspace(-1, 2, 33, F32)); }
static pn_array *c_eye(pn_array *const *x) { return pn_add(x[0], pn_eye(7, 33, 2, F32)); }
static pn_array *c_full(pn_array *const *x) { return pn_add(x[0], pn_full((int64_t[]){7, 33}, 2, pn_weak_float(2.5), F32)); }
static pn_array *c_tri(pn_array *const *x) { return pn_add(x[0], pn_tri(7, 33, -1, F32)); }
static pn_array *c_triu_t(pn_array *const *x) { return pn_triu(pn_transpose(x[0], (int[]){0, 2, 1}, 3), 1); }
static pn_array *c_arange_i16(pn_array *const *x) { return pn_arange(-5, 200, 7, PN_INT16); }
static pn_array *c_linspace_f16(pn_array *const *x) { return pn_linspace(-1, 3, 50, PN_FLOAT16); }
static pn_array *c_astype_i8(pn_array *const *x) { return pn_astype(x[0], PN_INT8); }
static pn_array *c_astype_bool(pn_array *const *x) { return pn_astype(x[0], PN_BOOL); }
static pn_array *c_astype_t_f16(pn_array *const *x) { return pn_astype(pn_transpose(x[0], NULL, 0), PN_FLOAT16); }
static pn_array *c_flip_copy(pn_array *const *x)
{
    return pn_reshape(pn_flip(pn_transpose(x[0], (int[]){2, 0, 1}, 3), (int[]){1}, 1), (int64_t[]){255}, 1);
}
static pn_array *c_as_strided(pn_array *const *x)
{
    return pn_reshape(pn_as_strided(x[0], (int64_t[]){4, 5}, (int64_t[]){7, 2}, 2, 3), (int64_t[]){20}, 1);
}

static pn_array *c_matmul(pn_array *const *x) { return pn_matmul(x[0], x[1]); }
static pn_array *c_matmul_t(pn_array *const *x) { return pn_matmul(x[0], pn_transpose(x[1], NULL, 0)); }
static pn_array *c_addmm(pn_array *const *x) { return pn_addmm(x[2], x[0], x[1], 0.5, 2.0); }
/* addmm with beta 1: a broadcast row c takes the GPU's fused bias epilogue (addmm_bias_*) */
static pn_array *c_addmm_bias(pn_array *const *x) { return pn_addmm(x[2], x[0], x[1], 1.0, 1.0); }
static pn_array *c_addmm_bias_alpha(pn_array *const *x) { return pn_addmm(x[2], x[0], x[1], -1.75, 1.0); }
static pn_array *c_addmm_bias_t(pn_array *const *x) /* both operands transposed views */
{
    return pn_addmm(x[2], pn_swapaxes(x[0], -1, -2), pn_swapaxes(x[1], -1, -2), 0.5, 1.0);
}
static pn_array *c_conv1d(pn_array *const *x) { return pn_conv1d(x[0], x[1], 2, 1, 1, 1); }
static pn_array *c_conv2d(pn_array *const *x)
{
    return pn_conv2d(x[0], x[1], (int[]){1, 2}, (int[]){1, 0}, (int[]){1, 1}, 1);
}
static pn_array *c_conv2d_groups(pn_array *const *x)
{
    return pn_conv2d(x[0], x[1], (int[]){2, 1}, (int[]){1, 1}, (int[]){1, 2}, 2);
}
static pn_array *c_conv2d_depthwise(pn_array *const *x)
{
    return pn_conv2d(x[0], x[1], NULL, (int[]){1, 1}, NULL, 4);
}
static pn_array *c_conv2d_pointwise(pn_array *const *x) { return pn_conv2d(x[0], x[1], NULL, NULL, NULL, 2); }
/* cuDNN mappings (backend/cuda/cudnn.c): strided + dilated forward (its input gradient is a
 * backward-data pass, its weight gradient a backward-filter pass), a true convolution
 * (flip), grouped transposed convolutions, 1-d and 3-d (the 3-d input arrives as 4-d and is
 * reshaped: in_spec holds 4 axes). */
static pn_array *c_conv2d_dil(pn_array *const *x)
{
    return pn_conv2d(x[0], x[1], (int[]){2, 1}, (int[]){1, 2}, (int[]){1, 2}, 1);
}
static pn_array *c_conv_flip(pn_array *const *x)
{
    return pn_conv_general(x[0], x[1], (int[]){1, 2}, (int[]){1, 1}, (int[]){1, 1}, NULL, NULL, 1, true);
}
static pn_array *c_conv_transpose2d_groups(pn_array *const *x)
{
    return pn_conv_transpose2d(x[0], x[1], (int[]){2, 1}, (int[]){0, 1}, (int[]){1, 2}, NULL, 2);
}
static pn_array *c_conv_transpose1d(pn_array *const *x) { return pn_conv_transpose1d(x[0], x[1], 3, 1, 1, 2, 1); }
static pn_array *c_conv3d(pn_array *const *x) /* x (2, 4, 5, 12) -> (2, 4, 5, 6, 2); w (3, 2, 3, 4) -> (3, 2, 3, 2, 2) */
{
    pn_array *a = pn_reshape(x[0], (int64_t[]){2, 4, 5, 6, 2}, 5), *b = pn_reshape(x[1], (int64_t[]){3, 2, 3, 2, 2}, 5);
    return pn_conv3d(a, b, (int[]){1, 2, 1}, (int[]){1, 1, 0}, (int[]){1, 1, 2}, 1);
}
static pn_array *c_conv_transpose2d(pn_array *const *x)
{
    return pn_conv_transpose2d(x[0], x[1], (int[]){2, 2}, (int[]){1, 0}, NULL, (int[]){1, 0}, 1);
}
static pn_array *c_maxpool2d(pn_array *const *x)
{
    return pn_nn_max_pool2d(x[0], (int[]){2, 2}, (int[]){2, 2}, (int[]){0, 0});
}
/* overlapping windows (an as_strided view) with padding */
static pn_array *c_maxpool2d_overlap(pn_array *const *x)
{
    return pn_nn_max_pool2d(x[0], (int[]){3, 3}, (int[]){2, 2}, (int[]){1, 1});
}
/* min over the last axis kept as 1: ExtremeVjp without an inner run */
static pn_array *c_min_last(pn_array *const *x) { return pn_min(x[0], (int[]){-1}, 1, true); }

static pn_array *idx_of(pn_array *x, int64_t n, int64_t hi)
{
    /* deterministic in-range indices (negative ones too) derived from the data */
    pn_array *i = pn_astype(pn_multiply(pn_abs(x), pn_weak_float((double)hi)), PN_INT32);
    (void)n;
    return pn_subtract(pn_remainder(i, pn_weak_int(2 * hi)), pn_weak_int(hi));
}
static pn_array *c_take(pn_array *const *x) { return pn_take(x[0], idx_of(x[1], 9, 7), 0); }
static pn_array *c_take_along(pn_array *const *x)
{
    return pn_take_along_axis(x[0], idx_of(x[1], 0, 33), 1);
}
static pn_array *c_put_along(pn_array *const *x)
{
    pn_array *idx = pn_astype(pn_multiply(pn_abs(x[1]), pn_weak_float(7)), PN_INT32);
    return pn_put_along_axis(x[0], pn_remainder(idx, pn_weak_int(7)), x[1], 0);
}
static pn_array *c_scatter_add(pn_array *const *x)
{
    pn_array *idx = pn_remainder(pn_astype(pn_multiply(pn_abs(x[1]), pn_weak_float(100)), PN_INT32),
                                 pn_weak_int(7));
    idx = pn_reshape(idx, (int64_t[]){33}, 1);
    /* updates: broadcast(indices) + slice shape (1, 1, 33) */
    pn_array *upd = pn_reshape(x[1], (int64_t[]){33, 1, 1, 1}, 4);
    pn_array *big = pn_broadcast_to(upd, (int64_t[]){33, 1, 1, 33}, 4);
    return pn_scatter(x[0], &idx, 1, big, (int[]){0}, PN_SCATTER_ADD);
}
static pn_array *c_scatter_max(pn_array *const *x)
{
    pn_array *idx = pn_remainder(pn_astype(pn_multiply(pn_abs(x[1]), pn_weak_float(100)), PN_INT32),
                                 pn_weak_int(7));
    idx = pn_reshape(idx, (int64_t[]){33}, 1);
    pn_array *upd = pn_broadcast_to(pn_reshape(x[1], (int64_t[]){33, 1, 1, 1}, 4),
                                    (int64_t[]){33, 1, 1, 33}, 4);
    return pn_scatter(x[0], &idx, 1, upd, (int[]){0}, PN_SCATTER_MAX);
}
static pn_array *c_scatter_set(pn_array *const *x)
{
    /* duplicate indices: the last update in row-major order wins on both devices */
    pn_array *idx = pn_remainder(pn_astype(pn_multiply(pn_abs(x[1]), pn_weak_float(100)), PN_INT32),
                                 pn_weak_int(7));
    idx = pn_reshape(idx, (int64_t[]){33}, 1);
    pn_array *upd = pn_broadcast_to(pn_reshape(x[1], (int64_t[]){33, 1, 1, 1}, 4),
                                    (int64_t[]){33, 1, 1, 33}, 4);
    return pn_scatter(x[0], &idx, 1, upd, (int[]){0}, PN_SCATTER_SET);
}
static pn_array *c_argpartition(pn_array *const *x)
{
    /* the kth element's index is unique for distinct values */
    pn_array *p = pn_argpartition(x[0], 4, -1);
    return pn_slice(p, (int64_t[]){0, 4}, (int64_t[]){7, 5}, NULL, 2);
}
static pn_array *c_sort(pn_array *const *x) { return pn_sort(x[0], -1); }
static pn_array *c_sort0(pn_array *const *x) { return pn_sort(x[0], 0); }
static pn_array *c_argsort(pn_array *const *x) { return pn_argsort(x[0], 1); }
static pn_array *c_topk(pn_array *const *x) { return pn_sort(pn_topk(x[0], 5, -1), -1); }
static pn_array *c_uniform(pn_array *const *x)
{
    return pn_add(x[0], pn_random_uniform(pn_weak_float(-1), pn_weak_float(1),
                                          (int64_t[]){7, 33}, 2, F32, pn_random_key(7)));
}
static pn_array *c_normal(pn_array *const *x)
{
    return pn_add(x[0], pn_random_normal((int64_t[]){7, 33}, 2, F32, 0, 1, pn_random_key(11)));
}
static pn_array *c_bits(pn_array *const *x)
{
    (void)x;
    return pn_random_bits((int64_t[]){5, 9}, 2, 4, pn_random_key(3));
}
static pn_array *c_layer_norm(pn_array *const *x) { return pn_nn_layer_norm(x[0], x[1], NULL, 1e-5); }
static pn_array *c_rms_norm(pn_array *const *x) { return pn_nn_rms_norm(x[0], x[1], 1e-5); }
static pn_array *c_layer_norm_wb(pn_array *const *x) { return pn_nn_layer_norm(x[0], x[1], x[2], 1e-5); }
static pn_array *c_layer_norm_bare(pn_array *const *x) { return pn_nn_layer_norm(x[0], NULL, NULL, 1e-5); }
static pn_array *c_rms_norm_bare(pn_array *const *x) { return pn_nn_rms_norm(x[0], NULL, 1e-5); }
/* rows of x strided (x given transposed) */
static pn_array *c_layer_norm_t(pn_array *const *x) { return pn_nn_layer_norm(pn_swapaxes(x[0], 0, 1), x[1], x[2], 1e-5); }
static pn_array *c_gelu(pn_array *const *x) { return pn_nn_gelu(x[0]); }
static pn_array *c_silu(pn_array *const *x) { return pn_nn_silu(x[0]); }
static pn_array *c_cross_entropy(pn_array *const *x)
{
    pn_array *t = pn_argmax(x[1], 1, false);
    return pn_nn_cross_entropy(x[0], t, -1, 0.1, PN_REDUCTION_MEAN);
}

/* matmul variants (compositions) and depends (a view primitive) */
static pn_array *c_depends(pn_array *const *x)
{
    pn_array *out;
    return pn_depends(&x[0], 1, &x[1], 1, &out) ? NULL : pn_multiply(out, out);
}
static pn_array *c_gather_mm(pn_array *const *x)
{
    pn_array *li = pn_array_from_data((int32_t[]){2, 0, 2, 1}, (int64_t[]){4}, 1, PN_INT32);
    pn_array *ri = pn_array_from_data((int32_t[]){1, 1, 0, 1}, (int64_t[]){4}, 1, PN_INT32);
    return pn_gather_mm(x[0], x[1], li, ri, false);
}
static pn_array *c_block_masked_mm(pn_array *const *x)
{
    pn_array *m = pn_greater(pn_random_uniform(pn_weak_float(0), pn_weak_float(1), (int64_t[]){2, 3}, 2,
                                               F32, pn_random_key(5)), pn_weak_float(0.4));
    return pn_block_masked_mm(x[0], x[1], 4, NULL, m, NULL);
}
static pn_array *c_segmented_mm(pn_array *const *x)
{
    pn_array *s = pn_array_from_data((int32_t[]){0, 5, 5, 12, 3, 9}, (int64_t[]){3, 2}, 2, PN_INT32);
    return pn_segmented_mm(x[0], x[1], s);
}
/* quantization (src/ops/quantized.c): quantize then dequantize; quantized_matmul with W
 * quantized in the case (W gets no gradient: Quantize is not differentiable) */
static pn_array *c_quant_roundtrip(pn_array *const *x)
{
    pn_array *q[3];
    if (pn_quantize(x[0], 32, 5, NULL, NULL, q)) return NULL;
    return pn_dequantize(q[0], q[1], q[2], 32, 5, NULL, NULL, PN_NUM_DTYPES);
}
static pn_array *c_qmm(pn_array *const *x)
{
    pn_array *q[3];
    if (pn_quantize(x[1], 32, 4, NULL, NULL, q)) return NULL;
    return pn_quantized_matmul(x[0], q[0], q[1], q[2], true, 32, 4, NULL);
}
static pn_array *c_qmm_n(pn_array *const *x)
{
    pn_array *q[3];
    if (pn_quantize(x[1], 32, 3, NULL, NULL, q)) return NULL;
    return pn_quantized_matmul(x[0], q[0], q[1], q[2], false, 32, 3, NULL);
}
/* the floating-point modes (mxfp4, mxfp8, nvfp4): round trips stacked (float32 for a float32
 * input, the default bfloat16 for a bfloat16 one), products of each mode summed, gather_qmm */
static const char *const fp_modes[3] = {"mxfp4", "mxfp8", "nvfp4"};
static pn_array *c_fp_roundtrip(pn_array *const *x)
{
    pn_array *d[3], *q[3];
    for (int m = 0; m < 3; m++) {
        if (pn_quantize(x[0], 0, 0, fp_modes[m], NULL, q)) return NULL;
        d[m] = pn_dequantize(q[0], q[1], NULL, 0, 0, fp_modes[m], NULL,
                             pn_array_dtype(x[0]) == PN_FLOAT32 ? PN_FLOAT32 : PN_NUM_DTYPES);
    }
    return pn_stack(d, 3, 0);
}
static pn_array *c_fp_qmm(pn_array *const *x, bool transpose)
{
    pn_array *y = NULL, *q[3];
    for (int m = 0; m < 3; m++) {
        if (pn_quantize(x[1], 0, 0, fp_modes[m], NULL, q)) return NULL;
        pn_array *r = pn_quantized_matmul(x[0], q[0], q[1], NULL, transpose, 0, 0, fp_modes[m]);
        y = y ? pn_add(y, r) : r;
    }
    return y;
}
static pn_array *c_fp_qmm_t(pn_array *const *x) { return c_fp_qmm(x, true); }
static pn_array *c_fp_qmm_nt(pn_array *const *x) { return c_fp_qmm(x, false); }
static pn_array *c_gather_qmm(pn_array *const *x)
{
    pn_array *q[3];
    if (pn_quantize(x[1], 0, 0, "mxfp4", NULL, q)) return NULL;
    pn_array *ri = pn_array_from_data((uint32_t[]){2, 0, 1, 2}, (int64_t[]){4}, 1, PN_UINT32);
    return pn_gather_qmm(x[0], q[0], q[1], NULL, NULL, ri, true, 0, 0, "mxfp4", false);
}

/* decompositions (src/ops/linalg_decomp.c): functions of the factors that do not depend on the
 * signs the two backends' solvers pick for singular / eigen vectors */
static pn_array *lin_spread(pn_array *q)
{
    int64_t k = pn_dim(q, -1);
    pn_array *c = pn_arange(1, (double)k + 1, 1, pn_array_dtype(q));
    return pn_matmul(pn_multiply(q, c), pn_swapaxes(q, -1, -2));
}
static pn_array *c_svd_values(pn_array *const *x)
{
    pn_array *s;
    return pn_linalg_svd(x[0], false, &s) ? NULL : s;
}
static pn_array *c_svd_vectors(pn_array *const *x)
{
    pn_array *o[3];
    if (pn_linalg_svd(x[0], true, o)) return NULL;
    int64_t k = pn_dim(o[1], -1), nd = pn_ndim(x[0]);
    int64_t lo[4] = {0}, hi[4];
    memcpy(hi, pn_shape(o[0]), sizeof(int64_t) * (size_t)nd);
    hi[nd - 1] = k;
    pn_array *uk = pn_slice(o[0], lo, hi, NULL, (int)nd);
    memcpy(hi, pn_shape(o[2]), sizeof(int64_t) * (size_t)nd);
    hi[nd - 2] = k;
    pn_array *vk = pn_swapaxes(pn_slice(o[2], lo, hi, NULL, (int)nd), -1, -2);
    pn_array *parts[3] = {lin_spread(uk), lin_spread(vk), pn_expand_dims(pn_square(o[1]), (int[]){-1}, 1)};
    parts[0] = pn_sum(parts[0], (int[]){-1}, 1, false), parts[1] = pn_sum(parts[1], (int[]){-1}, 1, false);
    parts[2] = pn_squeeze(parts[2], (int[]){-1}, 1);
    return pn_concatenate(parts, 3, -1);
}
static pn_array *c_eigh(pn_array *const *x)
{
    pn_array *w, *v;
    if (pn_linalg_eigh(x[0], 'L', &w, &v)) return NULL;
    pn_array *parts[2] = {w, pn_sum(lin_spread(v), (int[]){-1}, 1, false)};
    return pn_concatenate(parts, 2, -1);
}
static pn_array *c_eigvalsh_upper(pn_array *const *x) { return pn_linalg_eigvalsh(x[0], 'U'); }
/* rank-deficient inputs: x[0] @ x[1] (rank <= inner extent); the Gram matrix x x^T (symmetric,
 * repeated zero eigenvalues, so only its values are compared) */
static pn_array *c_svd_values_lowrank(pn_array *const *x)
{
    pn_array *s;
    return pn_linalg_svd(pn_matmul(x[0], x[1]), false, &s) ? NULL : s;
}
static pn_array *c_eigvalsh_gram(pn_array *const *x)
{
    return pn_linalg_eigvalsh(pn_matmul(x[0], pn_swapaxes(x[0], -1, -2)), 'L');
}
static pn_array *c_lu_factor(pn_array *const *x)
{
    pn_array *lu, *piv;
    return pn_linalg_lu_factor(x[0], &lu, &piv) ? NULL : lu;
}
static pn_array *c_lu_rows(pn_array *const *x)
{
    pn_array *p, *l, *u;
    return pn_linalg_lu(x[0], &p, &l, &u) ? NULL : p;
}
static pn_array *c_pinv(pn_array *const *x) { return pn_linalg_pinv(x[0]); }
/* QR (LAPACK's signs on both backends) */
static pn_array *c_qr_q(pn_array *const *x)
{
    pn_array *q, *r;
    return pn_linalg_qr(x[0], &q, &r) ? NULL : q;
}
static pn_array *c_qr_r(pn_array *const *x)
{
    pn_array *q, *r;
    return pn_linalg_qr(x[0], &q, &r) ? NULL : r;
}

/* solvers (src/ops/linalg_solve.c) on well-conditioned matrices: x + n I */
static pn_array *well_posed(pn_array *x)
{
    int64_t n = pn_dim(x, -1);
    return pn_add(x, pn_multiply(pn_eye(n, n, 0, pn_array_dtype(x)), pn_scalar((double)n, pn_array_dtype(x))));
}
static pn_array *c_solve_tri_lower(pn_array *const *x) { return pn_linalg_solve_triangular(well_posed(x[0]), x[1], false); }
static pn_array *c_solve_tri_upper(pn_array *const *x) { return pn_linalg_solve_triangular(well_posed(x[0]), x[1], true); }
static pn_array *c_inv(pn_array *const *x) { return pn_linalg_inv(well_posed(x[0])); }
static pn_array *c_solve(pn_array *const *x) { return pn_linalg_solve(well_posed(x[0]), x[1]); }
static pn_array *c_tri_inv(pn_array *const *x) { return pn_linalg_tri_inv(well_posed(x[0]), true); }
/* Cholesky of the SPD x x^T + n I */
static pn_array *c_cholesky(pn_array *const *x)
{
    return pn_linalg_cholesky(well_posed(pn_matmul(x[0], pn_swapaxes(x[0], -1, -2))), false);
}
/* eig: functions of the eigenpairs free of their order and phases: the traces of A and A^2
 * (sums of w and w^2), the vectors' total squared norm (n) and 1 + the residuals |A v - w v| */
static pn_array *c_eig(pn_array *const *x)
{
    pn_array *w, *v;
    if (pn_linalg_eig(x[0], &w, &v)) return NULL;
    pn_array *av = pn_matmul(pn_astype(x[0], PN_COMPLEX64), v);
    pn_array *vw = pn_multiply(v, pn_expand_dims(w, (int[]){-2}, 1));
    pn_array *parts[4] = {
        pn_real(pn_sum(w, (int[]){-1}, 1, false)),
        pn_real(pn_sum(pn_multiply(w, w), (int[]){-1}, 1, false)),
        pn_sum(pn_square(pn_abs(v)), (int[]){-2, -1}, 2, false),
        pn_add(pn_sum(pn_abs(pn_subtract(av, vw)), (int[]){-2, -1}, 2, false), pn_weak_float(1)),
    };
    return pn_stack(parts, 4, -1);
}
static pn_array *c_eigvals(pn_array *const *x)
{
    pn_array *w = pn_linalg_eigvals(x[0]);
    pn_array *parts[2] = {pn_real(pn_sum(w, (int[]){-1}, 1, false)),
                          pn_real(pn_sum(pn_multiply(w, w), (int[]){-1}, 1, false))};
    return pn_stack(parts, 2, -1);
}

#define IN(...) {__VA_ARGS__}
static const op_case CASES[] = {
#define UNARY_ENTRY(NM, LO, HI, G)                                                             \
    {"unary " #NM, u_##NM, 1, {IN(SH2, F32, LO, HI)}, G, false},                               \
    {"unary " #NM " f16", u_##NM, 1, {IN(SH3, PN_FLOAT16, LO, HI)}, false, false},             \
    {"unary " #NM " f64", u_##NM, 1, {IN(SH1, PN_FLOAT64, LO, HI)}, false, false},
    UNARY_CASES(UNARY_ENTRY)
#define BINARY_ENTRY(NM, G)                                                                    \
    {"binary " #NM, b_##NM, 2, {IN(SH2, F32, 0.5, 3), IN(SH2, F32, 0.5, 3)}, G, false},       \
    {"binary " #NM " bcast", b_##NM, 2, {IN(SH3, F32, 0.5, 3), IN(1, {17}, F32, 0.5, 3)}, false, false}, \
    {"binary " #NM " int32", b_##NM, 2, {IN(SH2, PN_INT32, -20, 20), IN(SH2, PN_INT32, 1, 9)}, false, false}, \
    {"binary " #NM " bf16", b_##NM, 2, {IN(SH2, PN_BFLOAT16, 0.5, 3), IN(SH2, PN_BFLOAT16, 0.5, 3)}, false, false},
    BINARY_CASES(BINARY_ENTRY)
    {"where", c_where, 3, {IN(SH2, F32, -1, 1), IN(SH2, F32, -1, 1), IN(SH1, F32, -1, 1)}, true, false},
    {"compiled chain", c_compiled, 2, {IN(SH2, F32, -1, 1), IN(SH2, F32, -1, 1)}, true, false},
    {"compiled gelu", c_cgelu, 1, {IN(SH2, F32, -3, 3)}, true, false},
    {"compiled gelu f16", c_cgelu, 1, {IN(SH3, PN_FLOAT16, -3, 3)}, false, false},
    {"compiled gelu f64", c_cgelu, 1, {IN(SH1, PN_FLOAT64, -3, 3)}, false, false},
    {"compiled scalar bcast", c_cbcast, 2, {IN(SH2, F32, -1, 1), IN(0, {0}, F32, -1, 1)}, true, false},
    {"compiled where", c_cwhere, 2, {IN(SH2, F32, -1, 1), IN(SH2, F32, -1, 1)}, true, false},
    {"compiled where bf16", c_cwhere, 2, {IN(SH3, PN_BFLOAT16, -1, 1), IN(SH3, PN_BFLOAT16, -1, 1)}, false, false},
    {"compiled astype f32->bf16->f32", c_castype, 2, {IN(SH2, F32, -3, 3), IN(SH2, F32, -3, 3)}, false, false},
    {"divmod int32", c_divmod, 2, {IN(SH2, PN_INT32, -50, 50), IN(SH2, PN_INT32, -9, 9)}, false, false},
    {"shifts int8", c_shifts, 2, {IN(SH2, PN_INT8, -100, 100), IN(SH2, PN_INT8, 0, 100)}, false, false},
    {"shifts uint8", c_shifts, 2, {IN(SH2, PN_UINT8, 0, 250), IN(SH2, PN_UINT8, 0, 100)}, false, false},
    {"integer unary int16", c_int_unary, 1, {IN(SH2, PN_INT16, -100, 100)}, false, false},
    {"nan_to_num", c_nan_to_num, 1, {IN(SH2, F32, -1, 1)}, false, false},
    {"misaligned f16 slice", c_misaligned_sin, 1, {IN(SH1, PN_FLOAT16, -3, 3)}, false, false},
    {"complex64", c_complex, 2, {IN(SH2, PN_COMPLEX64, 0.5, 2), IN(SH2, PN_COMPLEX64, 0.5, 2)}, false, false},
    {"conjugate complex64", c_complex_conj, 2, {IN(SH2, PN_COMPLEX64, -2, 2), IN(SH2, PN_COMPLEX64, -2, 2)}, false, false},
    {"bitwise and/or int32", c_bitwise, 2, {IN(SH2, PN_INT32, -1000, 1000), IN(SH2, PN_INT32, -1000, 1000)}, false, false},
    {"bitwise and/or uint16", c_bitwise, 2, {IN(SH3, PN_UINT16, 0, 60000), IN(SH3, PN_UINT16, 0, 60000)}, false, false},
    {"isinf isposinf isneginf", c_infs, 1, {IN(SH2, F32, -1.5, 1.5)}, false, false},
    {"isinf f16", c_infs, 1, {IN(SH3, PN_FLOAT16, -1.5, 1.5)}, false, false},
    {"stop_gradient", c_stop_gradient, 1, {IN(SH2, F32, -2, 2)}, true, false},
    {"astype f16", c_astype_f16, 1, {IN(SH2, F32, -100, 100)}, false, false},
    {"astype bf16", c_astype_bf16, 1, {IN(SH2, F32, -100, 100)}, false, false},
    {"astype i32", c_astype_i32, 1, {IN(SH2, F32, -100, 100)}, false, false},
    {"astype f64", c_astype_f64, 1, {IN(SH3, PN_INT16, -100, 100)}, false, false},
    {"to_fp8", c_to_fp8, 1, {IN(SH2, F32, -600, 600)}, false, false},
    {"to_fp8 f16 strided", c_to_fp8_t, 1, {IN(SH2, PN_FLOAT16, -0.05, 0.05)}, false, false},
    {"clip", c_clip, 1, {IN(SH2, F32, -2, 2)}, true, false},
    {"round", c_round, 1, {IN(SH2, F32, -2, 2)}, false, false},
    {"isclose", c_isclose, 2, {IN(SH2, F32, -1, 1), IN(SH2, F32, -1, 1)}, false, false},
    {"sum all", c_sum_all, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"sum axis 1", c_sum_ax1, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"sum axes 0,2", c_sum_ax02, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"sum int32", c_sum_ax02, 1, {IN(SH3, PN_INT32, -9, 9)}, false, false},
    {"sum f16", c_sum_ax1, 1, {IN(SH3, PN_FLOAT16, -1, 1)}, false, false},
    /* long contiguous rows: the row kernel's several-loads-in-flight loop and its tail */
    {"sum all long", c_sum_all, 1, {IN(2, {3, 20011}, F32, -1, 1)}, false, false},
    {"sum rows long f16", c_sum_ax1, 1, {IN(2, {2, 9000}, PN_FLOAT16, -1, 1)}, false, false},
    {"prod", c_prod, 1, {IN(SH3, F32, 0.5, 1.5)}, true, false},
    {"max", c_max, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"min", c_min, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"mean", c_mean, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"var", c_var, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"all", c_all, 1, {IN(SH3, F32, -1, 1)}, false, false},
    {"any", c_any, 1, {IN(SH3, F32, -1, 1)}, false, false},
    {"argmax", c_argmax, 1, {IN(SH3, F32, -1, 1)}, false, false},
    {"argmin", c_argmin, 1, {IN(SH3, F32, -1, 1)}, false, false},
    {"logsumexp", c_logsumexp, 1, {IN(SH3, F32, -3, 3)}, true, false},
    {"softmax", c_softmax, 1, {IN(SH3, F32, -3, 3)}, true, false},
    {"softmax axis 0", c_softmax0, 1, {IN(SH3, F32, -3, 3)}, true, false},
    {"sdpa causal", c_sdpa_causal, 3, {IN(4, {2, 2, 37, 16}, F32, -1, 1), IN(4, {2, 2, 45, 16}, F32, -1, 1),
                                       IN(4, {2, 2, 45, 8}, F32, -1, 1)}, true, false},
    {"sdpa causal Lq > Lk f64", c_sdpa_causal, 3, {IN(4, {1, 2, 9, 5}, PN_FLOAT64, -1, 1),
                                                   IN(4, {1, 2, 4, 5}, PN_FLOAT64, -1, 1),
                                                   IN(4, {1, 2, 4, 3}, PN_FLOAT64, -1, 1)}, true, false},
    {"sdpa bool mask", c_sdpa_bool, 3, {IN(4, {2, 2, 7, 16}, F32, -1, 1), IN(4, {2, 2, 3, 16}, F32, -1, 1),
                                        IN(4, {2, 2, 3, 16}, F32, -1, 1)}, true, false},
    {"sdpa gqa", c_sdpa_causal, 3, {IN(4, {1, 4, 40, 24}, F32, -1, 1), IN(4, {1, 2, 40, 24}, F32, -1, 1),
                                    IN(4, {1, 2, 40, 40}, F32, -1, 1)}, true, false},
    {"sdpa sinks gqa causal", c_sdpa_sinks_causal, 4, {IN(4, {2, 4, 21, 16}, F32, -1, 1), IN(4, {2, 2, 29, 16}, F32, -1, 1),
                                                       IN(4, {2, 2, 29, 8}, F32, -1, 1), IN(1, {4}, F32, -1, 2)}, true, false},
    {"sdpa sinks Lq > Lk f64", c_sdpa_sinks_causal, 4, {IN(4, {1, 2, 9, 5}, PN_FLOAT64, -1, 1),
                                                        IN(4, {1, 2, 4, 5}, PN_FLOAT64, -1, 1),
                                                        IN(4, {1, 2, 4, 3}, PN_FLOAT64, -1, 1), IN(1, {2}, PN_FLOAT64, -1, 2)}, true, false},
    {"sdpa f16", c_sdpa_bool, 3, {IN(4, {1, 4, 33, 16}, PN_FLOAT16, -1, 1), IN(4, {1, 1, 70, 16}, PN_FLOAT16, -1, 1),
                                  IN(4, {1, 1, 70, 16}, PN_FLOAT16, -1, 1)}, true, false},
    /* head dims past the default 48 KiB of shared memory (the opt-in limit, smaller chunks, and
     * past that global scratch), Dv != D, grouped heads, float64 */
    {"sdpa D128", c_sdpa_plain, 3, {IN(4, {1, 2, 20, 128}, F32, -0.5, 0.5), IN(4, {1, 2, 33, 128}, F32, -0.5, 0.5),
                                    IN(4, {1, 2, 33, 128}, F32, -0.5, 0.5)}, true, false},
    {"sdpa D160 Dv96 causal", c_sdpa_causal, 3, {IN(4, {1, 2, 19, 160}, F32, -0.5, 0.5), IN(4, {1, 2, 19, 160}, F32, -0.5, 0.5),
                                                 IN(4, {1, 2, 19, 96}, F32, -0.5, 0.5)}, true, false},
    {"sdpa D256 gqa bool", c_sdpa_bool, 3, {IN(4, {1, 4, 9, 256}, F32, -0.5, 0.5), IN(4, {1, 2, 21, 256}, F32, -0.5, 0.5),
                                            IN(4, {1, 2, 21, 256}, F32, -0.5, 0.5)}, true, false},
    {"sdpa D64 f64", c_sdpa_bool, 3, {IN(4, {2, 2, 17, 64}, PN_FLOAT64, -0.5, 0.5), IN(4, {2, 2, 23, 64}, PN_FLOAT64, -0.5, 0.5),
                                      IN(4, {2, 2, 23, 64}, PN_FLOAT64, -0.5, 0.5)}, true, false},
    {"sdpa D128 Dv72 gqa causal f64", c_sdpa_causal, 3, {IN(4, {1, 4, 11, 128}, PN_FLOAT64, -0.5, 0.5),
                                                         IN(4, {1, 2, 13, 128}, PN_FLOAT64, -0.5, 0.5),
                                                         IN(4, {1, 2, 13, 72}, PN_FLOAT64, -0.5, 0.5)}, true, false},
    {"sdpa D256 bf16", c_sdpa_plain, 3, {IN(4, {1, 2, 7, 256}, PN_BFLOAT16, -0.5, 0.5), IN(4, {1, 2, 12, 256}, PN_BFLOAT16, -0.5, 0.5),
                                         IN(4, {1, 2, 12, 256}, PN_BFLOAT16, -0.5, 0.5)}, true, false},
    {"sdpa D512 f64 (chunks of 16)", c_sdpa_causal, 3, {IN(4, {1, 1, 5, 512}, PN_FLOAT64, -0.5, 0.5),
                                                        IN(4, {1, 1, 37, 512}, PN_FLOAT64, -0.5, 0.5),
                                                        IN(4, {1, 1, 37, 512}, PN_FLOAT64, -0.5, 0.5)}, true, false},
    {"sdpa D6000 f64 (global scratch)", c_sdpa_plain, 3, {IN(4, {1, 1, 3, 6000}, PN_FLOAT64, -1, 1),
                                                          IN(4, {1, 1, 5, 6000}, PN_FLOAT64, -1, 1),
                                                          IN(4, {1, 1, 5, 6000}, PN_FLOAT64, -1, 1)}, true, false},
    {"sdpa D15000 (global scratch)", c_sdpa_plain, 3, {IN(4, {1, 1, 2, 15000}, F32, -0.2, 0.2),
                                                       IN(4, {1, 1, 3, 15000}, F32, -0.2, 0.2),
                                                       IN(4, {1, 1, 3, 15000}, F32, -0.2, 0.2)}, true, false},
    /* additive masks with rows all finfo.min, -1e9 or -inf, and a row of -inf and -1e9 */
    {"sdpa finfo.min rows gqa", c_sdpa_min_rows, 3, {IN(4, {2, 2, 6, 16}, F32, -1, 1), IN(4, {2, 1, 9, 16}, F32, -1, 1),
                                                     IN(4, {2, 1, 9, 8}, F32, -1, 1)}, true, false},
    {"sdpa -1e9 rows", c_sdpa_1e9_rows, 3, {IN(4, {1, 2, 6, 16}, F32, -1, 1), IN(4, {1, 2, 40, 16}, F32, -1, 1),
                                            IN(4, {1, 2, 40, 8}, F32, -1, 1)}, true, false},
    {"sdpa -inf rows", c_sdpa_inf_rows, 3, {IN(4, {1, 2, 6, 16}, F32, -1, 1), IN(4, {1, 1, 9, 16}, F32, -1, 1),
                                            IN(4, {1, 1, 9, 8}, F32, -1, 1)}, true, false},
    {"sdpa finfo.min rows f64", c_sdpa_min_rows, 3, {IN(4, {1, 2, 6, 8}, PN_FLOAT64, -1, 1),
                                                     IN(4, {1, 2, 9, 8}, PN_FLOAT64, -1, 1),
                                                     IN(4, {1, 2, 9, 8}, PN_FLOAT64, -1, 1)}, true, false},
    {"sdpa -inf rows f64", c_sdpa_inf_rows, 3, {IN(4, {1, 2, 6, 8}, PN_FLOAT64, -1, 1), IN(4, {1, 2, 9, 8}, PN_FLOAT64, -1, 1),
                                                IN(4, {1, 2, 9, 8}, PN_FLOAT64, -1, 1)}, true, false},
    {"multivariate_normal", c_mvn, 1, {IN(3, {3, 5, 5}, F32, -1, 1)}, false, false},
    /* rows of whole 16-byte runs: the cached softmax's vector path, per width */
    {"softmax rows of 64", c_softmax, 1, {IN(2, {6, 64}, F32, -3, 3)}, true, false},
    {"softmax rows of 1000", c_softmax, 1, {IN(2, {3, 1000}, F32, -3, 3)}, false, false},
    {"softmax f16 rows of 40", c_softmax, 1, {IN(2, {5, 40}, PN_FLOAT16, -3, 3)}, false, false},
    {"softmax bf16 rows of 4096", c_softmax, 1, {IN(2, {2, 4096}, PN_BFLOAT16, -3, 3)}, false, false},
    {"softmax f64 rows of 30", c_softmax, 1, {IN(2, {4, 30}, PN_FLOAT64, -3, 3)}, false, false},
    {"log_softmax", c_log_softmax, 1, {IN(SH2, F32, -3, 3)}, true, false},
    {"cumsum", c_cumsum, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"cumsum reverse exclusive", c_cumsum_rev, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"cumprod", c_cumprod, 1, {IN(SH3, F32, 0.5, 1.5)}, true, false},
    {"cummax", c_cummax, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"logcumsumexp", c_logcumsumexp, 1, {IN(SH3, F32, -2, 2)}, true, false},
    {"fft", c_fft, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"fft bluestein", c_fft, 1, {IN(2, {2, 67}, F32, -1, 1)}, true, false},
    {"fftn padded", c_fft2_pad, 2, {IN(SH3, F32, -1, 1), IN(SH3, F32, -1, 1)}, true, false},
    {"ifftn", c_ifftn, 2, {IN(SH3, F32, -1, 1), IN(SH3, F32, -1, 1)}, true, false},
    {"rfft axis 1", c_rfft, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"rfft2 transposed", c_rfft2_t, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"irfftn", c_irfftn, 2, {IN(SH3, F32, -1, 1), IN(SH3, F32, -1, 1)}, true, false},
    {"irfft odd n", c_irfft_odd, 2, {IN(SH2, F32, -1, 1), IN(SH2, F32, -1, 1)}, true, false},
    {"transpose", c_transpose_add, 1, {IN(SH2, F32, -1, 1)}, true, false},
    {"reshape of transpose", c_reshape_t, 1, {IN(SH2, F32, -1, 1)}, true, false},
    {"slice with steps", c_slice, 1, {IN(SH2, F32, -1, 1)}, true, false},
    {"slice_update", c_slice_update, 2, {IN(SH2, F32, -1, 1), IN(1, {10}, F32, -1, 1)}, true, false},
    {"concatenate", c_concat, 2, {IN(SH2, F32, -1, 1), IN(2, {33, 4}, F32, -1, 1)}, true, false},
    {"split", c_split, 1, {IN(SH2, F32, -1, 1)}, true, false},
    {"split backwards indices", c_split_back, 1, {IN(SH2, F32, -1, 1)}, true, false},
    {"pad", c_pad, 1, {IN(SH2, F32, -1, 1)}, true, false},
    {"broadcast", c_broadcast, 2, {IN(SH2, F32, -1, 1), IN(2, {7, 1}, F32, -1, 1)}, true, false},
    {"tril", c_tril, 1, {IN(SH2, F32, -1, 1)}, true, false},
    {"diagonal", c_diagonal, 1, {IN(SH2, F32, -1, 1)}, true, false},
    {"arange", c_arange, 1, {IN(SH2, F32, -1, 1)}, false, false},
    {"linspace", c_linspace, 1, {IN(SH2, F32, -1, 1)}, false, false},
    {"eye", c_eye, 1, {IN(SH2, F32, -1, 1)}, false, false},
    {"full", c_full, 1, {IN(SH2, F32, -1, 1)}, false, false},
    {"tri", c_tri, 1, {IN(SH2, F32, -1, 1)}, false, false},
    {"triu of transpose", c_triu_t, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"arange int16", c_arange_i16, 0, {{0}}, false, false},
    {"linspace f16", c_linspace_f16, 0, {{0}}, false, false},
    {"astype i8 (saturating)", c_astype_i8, 1, {IN(SH2, F32, -300, 300)}, false, false},
    {"astype bool", c_astype_bool, 1, {IN(SH2, PN_INT32, -2, 2)}, false, false},
    {"astype of transpose f16", c_astype_t_f16, 1, {IN(SH2, F32, -100, 100)}, true, false},
    {"flip of transpose copy", c_flip_copy, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"as_strided", c_as_strided, 1, {IN(SH2, F32, -1, 1)}, true, false},
    {"matmul", c_matmul, 2, {IN(2, {7, 33}, F32, -1, 1), IN(2, {33, 12}, F32, -1, 1)}, true, false},
    {"matmul transposed", c_matmul_t, 2, {IN(3, {2, 7, 33}, F32, -1, 1), IN(2, {12, 33}, F32, -1, 1)}, true, false},
    {"matmul f64", c_matmul, 2, {IN(2, {7, 33}, PN_FLOAT64, -1, 1), IN(2, {33, 12}, PN_FLOAT64, -1, 1)}, false, false},
    {"matmul f16", c_matmul, 2, {IN(2, {7, 33}, PN_FLOAT16, -1, 1), IN(2, {33, 12}, PN_FLOAT16, -1, 1)}, false, false},
    {"matmul bf16", c_matmul, 2, {IN(2, {7, 33}, PN_BFLOAT16, -1, 1), IN(2, {33, 12}, PN_BFLOAT16, -1, 1)}, false, false},
    {"addmm", c_addmm, 3, {IN(2, {7, 33}, F32, -1, 1), IN(2, {33, 12}, F32, -1, 1), IN(1, {12}, F32, -1, 1)}, true, false},
    {"conv1d", c_conv1d, 2, {IN(3, {2, 15, 3}, F32, -1, 1), IN(3, {4, 3, 3}, F32, -1, 1)}, true, false},
    {"conv2d", c_conv2d, 2, {IN(4, {2, 9, 8, 3}, F32, -1, 1), IN(4, {5, 3, 3, 3}, F32, -1, 1)}, true, false},
    {"matmul batched broadcast", c_matmul, 2, {IN(4, {2, 1, 5, 6}, F32, -1, 1), IN(3, {3, 6, 4}, F32, -1, 1)}, true, false},
    {"depends", c_depends, 2, {IN(SH2, F32, -1, 1), IN(SH1, F32, -1, 1)}, true, false},
    {"gather_mm", c_gather_mm, 2, {IN(3, {3, 5, 6}, F32, -1, 1), IN(3, {2, 6, 4}, F32, -1, 1)}, true, false},
    {"block_masked_mm", c_block_masked_mm, 2, {IN(2, {7, 12}, F32, -1, 1), IN(2, {12, 5}, F32, -1, 1)}, true, false},
    {"segmented_mm", c_segmented_mm, 2, {IN(2, {5, 12}, F32, -1, 1), IN(2, {12, 4}, F32, -1, 1)}, true, false},
    {"matmul vector", c_matmul, 2, {IN(1, {6}, F32, -1, 1), IN(3, {3, 6, 4}, F32, -1, 1)}, true, false},
    {"addmm_bias f32", c_addmm_bias, 3, {IN(2, {7, 33}, F32, -1, 1), IN(2, {33, 12}, F32, -1, 1), IN(1, {12}, F32, -1, 1)}, true, false},
    {"addmm_bias f32 alpha", c_addmm_bias_alpha, 3, {IN(2, {7, 33}, F32, -1, 1), IN(2, {33, 12}, F32, -1, 1), IN(2, {1, 12}, F32, -1, 1)}, true, false},
    {"addmm_bias f16", c_addmm_bias_alpha, 3, {IN(2, {7, 33}, PN_FLOAT16, -1, 1), IN(2, {33, 12}, PN_FLOAT16, -1, 1), IN(1, {12}, PN_FLOAT16, -1, 1)}, false, false},
    {"addmm_bias bf16", c_addmm_bias, 3, {IN(2, {7, 33}, PN_BFLOAT16, -1, 1), IN(2, {33, 12}, PN_BFLOAT16, -1, 1), IN(1, {12}, PN_BFLOAT16, -1, 1)}, false, false},
    {"addmm_bias batched folded", c_addmm_bias, 3, {IN(3, {3, 7, 9}, F32, -1, 1), IN(2, {9, 5}, F32, -1, 1), IN(1, {5}, F32, -1, 1)}, true, false},
    {"addmm_bias batched strided", c_addmm_bias_alpha, 3, {IN(3, {3, 7, 9}, F32, -1, 1), IN(3, {3, 9, 5}, F32, -1, 1), IN(3, {1, 1, 5}, F32, -1, 1)}, true, false},
    {"addmm_bias batched broadcast f16", c_addmm_bias, 3, {IN(4, {2, 1, 5, 6}, PN_FLOAT16, -1, 1), IN(3, {3, 6, 4}, PN_FLOAT16, -1, 1), IN(1, {4}, PN_FLOAT16, -1, 1)}, false, false},
    {"addmm_bias transposed", c_addmm_bias_t, 3, {IN(3, {2, 9, 7}, F32, -1, 1), IN(2, {5, 9}, F32, -1, 1), IN(1, {5}, F32, -1, 1)}, true, false},
    /* not fused: beta != 1, a full matrix c, a column c, float64 */
    {"addmm_nobias beta 2 row c", c_addmm, 3, {IN(2, {7, 33}, F32, -1, 1), IN(2, {33, 12}, F32, -1, 1), IN(1, {12}, F32, -1, 1)}, false, false},
    {"addmm_nobias full c", c_addmm_bias, 3, {IN(2, {7, 33}, F32, -1, 1), IN(2, {33, 12}, F32, -1, 1), IN(2, {7, 12}, F32, -1, 1)}, true, false},
    {"addmm_nobias column c", c_addmm_bias, 3, {IN(2, {7, 33}, F32, -1, 1), IN(2, {33, 12}, F32, -1, 1), IN(2, {7, 1}, F32, -1, 1)}, true, false},
    {"addmm_nobias f64 row c", c_addmm_bias, 3, {IN(2, {7, 33}, PN_FLOAT64, -1, 1), IN(2, {33, 12}, PN_FLOAT64, -1, 1), IN(1, {12}, PN_FLOAT64, -1, 1)}, false, false},
    {"addmm batched", c_addmm, 3, {IN(3, {3, 7, 9}, F32, -1, 1), IN(2, {9, 5}, F32, -1, 1), IN(2, {7, 5}, F32, -1, 1)}, true, false},
    /* f32 grouped conv's input gradient differs from the CPU by float rounding of long sums
     * (1e-7 absolute); the f64 case checks the gradient exactly */
    {"conv2d groups", c_conv2d_groups, 2, {IN(4, {2, 9, 8, 6}, F32, -1, 1), IN(4, {4, 3, 2, 3}, F32, -1, 1)}, false, false},
    {"conv2d groups f64", c_conv2d_groups, 2, {IN(4, {2, 9, 8, 6}, PN_FLOAT64, -1, 1), IN(4, {4, 3, 2, 3}, PN_FLOAT64, -1, 1)}, true, false},
    {"conv2d depthwise", c_conv2d_depthwise, 2, {IN(4, {2, 7, 6, 4}, F32, -1, 1), IN(4, {4, 3, 3, 1}, F32, -1, 1)}, true, false},
    {"conv2d pointwise", c_conv2d_pointwise, 2, {IN(4, {2, 5, 4, 6}, F32, -1, 1), IN(4, {4, 1, 1, 3}, F32, -1, 1)}, true, false},
    {"conv_transpose2d", c_conv_transpose2d, 2, {IN(4, {2, 5, 4, 3}, F32, -1, 1), IN(4, {4, 3, 3, 3}, F32, -1, 1)}, true, false},
    {"conv2d f16", c_conv2d, 2, {IN(4, {2, 9, 8, 3}, PN_FLOAT16, -1, 1), IN(4, {5, 3, 3, 3}, PN_FLOAT16, -1, 1)}, false, false},
    {"conv2d bf16", c_conv2d, 2, {IN(4, {2, 9, 8, 3}, PN_BFLOAT16, -1, 1), IN(4, {5, 3, 3, 3}, PN_BFLOAT16, -1, 1)}, false, false},
    {"conv2d strided dilated", c_conv2d_dil, 2, {IN(4, {2, 9, 8, 3}, F32, -1, 1), IN(4, {5, 3, 2, 3}, F32, -1, 1)}, true, false},
    {"conv2d strided dilated f64", c_conv2d_dil, 2, {IN(4, {2, 9, 8, 3}, PN_FLOAT64, -1, 1), IN(4, {5, 3, 2, 3}, PN_FLOAT64, -1, 1)}, true, false},
    {"conv2d strided dilated f16", c_conv2d_dil, 2, {IN(4, {2, 9, 8, 3}, PN_FLOAT16, -1, 1), IN(4, {5, 3, 2, 3}, PN_FLOAT16, -1, 1)}, false, false},
    {"conv_general flip", c_conv_flip, 2, {IN(4, {2, 6, 7, 3}, F32, -1, 1), IN(4, {4, 3, 2, 3}, F32, -1, 1)}, true, false},
    {"conv_transpose2d groups", c_conv_transpose2d_groups, 2, {IN(4, {2, 4, 5, 4}, F32, -1, 1), IN(4, {6, 2, 3, 2}, F32, -1, 1)}, true, false},
    {"conv_transpose2d groups bf16", c_conv_transpose2d_groups, 2, {IN(4, {2, 4, 5, 4}, PN_BFLOAT16, -1, 1), IN(4, {6, 2, 3, 2}, PN_BFLOAT16, -1, 1)}, false, false},
    {"conv_transpose1d", c_conv_transpose1d, 2, {IN(3, {2, 6, 3}, F32, -1, 1), IN(3, {2, 4, 3}, F32, -1, 1)}, true, false},
    {"conv3d", c_conv3d, 2, {IN(4, {2, 4, 5, 12}, F32, -1, 1), IN(4, {3, 2, 3, 4}, F32, -1, 1)}, true, false},
    {"max_pool2d", c_maxpool2d, 1, {IN(4, {2, 8, 6, 3}, F32, -1, 1)}, true, false},
    {"max_pool2d overlapping f16", c_maxpool2d_overlap, 1, {IN(4, {2, 7, 6, 3}, PN_FLOAT16, -1, 1)}, true, false},
    {"min last axis keepdims bf16", c_min_last, 1, {IN(SH3, PN_BFLOAT16, -1, 1)}, true, false},
    {"take", c_take, 2, {IN(SH2, F32, -1, 1), IN(1, {9}, F32, -1, 1)}, true, false},
    {"take_along_axis", c_take_along, 2, {IN(SH2, F32, -1, 1), IN(SH2, F32, -1, 1)}, true, false},
    {"put_along_axis", c_put_along, 2, {IN(SH2, F32, -1, 1), IN(2, {1, 33}, F32, -1, 1)}, false, false},
    {"scatter add", c_scatter_add, 2, {IN(3, {7, 1, 33}, F32, -1, 1), IN(SH1, F32, -1, 1)}, true, false},
    {"scatter max", c_scatter_max, 2, {IN(3, {7, 1, 33}, F32, -1, 1), IN(SH1, F32, -1, 1)}, false, false},
    {"sort", c_sort, 1, {IN(SH3, F32, -1, 1)}, true, false},
    {"sort axis 0", c_sort0, 1, {IN(SH3, F32, -1, 1)}, false, false},
    {"sort long row", c_sort, 1, {IN(2, {2, 10000}, F32, -1, 1)}, false, false},
    {"sort int32", c_sort, 1, {IN(SH2, PN_INT32, -50, 50)}, false, false},
    {"argpartition", c_argpartition, 1, {IN(SH2, F32, -1, 1)}, false, false},
    {"scatter set, duplicates", c_scatter_set, 2, {IN(3, {7, 1, 33}, F32, -1, 1), IN(SH1, F32, -1, 1)}, false, false},
    {"argsort", c_argsort, 1, {IN(SH3, F32, -1, 1)}, false, false},
    {"topk", c_topk, 1, {IN(SH2, F32, -1, 1)}, false, false},
    {"random uniform", c_uniform, 1, {IN(SH2, F32, -1, 1)}, false, false},
    {"random normal", c_normal, 1, {IN(SH2, F32, -1, 1)}, false, false},
    {"random bits", c_bits, 0, {{0}}, false, false},
    {"layer_norm", c_layer_norm, 2, {IN(SH2, F32, -2, 2), IN(SH1, F32, 0.5, 1.5)}, true, false},
    {"rms_norm", c_rms_norm, 2, {IN(SH2, F32, -2, 2), IN(SH1, F32, 0.5, 1.5)}, true, false},
    /* the fused kernels: a warp per row up to 1024 elements, a block per row beyond */
    {"layer_norm + bias", c_layer_norm_wb, 3, {IN(SH2, F32, -2, 2), IN(SH1, F32, 0.5, 1.5), IN(SH1, F32, -1, 1)}, true, false},
    {"layer_norm rows of 64", c_layer_norm_wb, 3, {IN(3, {4, 16, 64}, F32, -2, 3), IN(1, {64}, F32, 0.5, 1.5), IN(1, {64}, F32, -1, 1)}, true, false},
    {"layer_norm rows of 1500", c_layer_norm_wb, 3, {IN(2, {3, 1500}, F32, -2, 3), IN(1, {1500}, F32, 0.5, 1.5), IN(1, {1500}, F32, -1, 1)}, true, false},
    {"layer_norm strided rows", c_layer_norm_t, 3, {IN(2, {33, 7}, F32, -2, 2), IN(SH1, F32, 0.5, 1.5), IN(SH1, F32, -1, 1)}, true, false},
    {"layer_norm no params", c_layer_norm_bare, 1, {IN(SH3, F32, -2, 2)}, true, false},
    {"layer_norm f16 rows of 40", c_layer_norm_wb, 3, {IN(2, {5, 40}, PN_FLOAT16, -2, 2), IN(1, {40}, PN_FLOAT16, 0.5, 1.5), IN(1, {40}, PN_FLOAT16, -1, 1)}, true, false},
    {"layer_norm f64 rows of 30", c_layer_norm_wb, 3, {IN(2, {4, 30}, PN_FLOAT64, -2, 2), IN(1, {30}, PN_FLOAT64, 0.5, 1.5), IN(1, {30}, PN_FLOAT64, -1, 1)}, true, false},
    {"rms_norm bf16 rows of 4096", c_rms_norm, 2, {IN(2, {2, 4096}, PN_BFLOAT16, -2, 2), IN(1, {4096}, PN_BFLOAT16, 0.5, 1.5)}, true, false},
    {"rms_norm no params", c_rms_norm_bare, 1, {IN(SH2, F32, -2, 2)}, true, false},
    {"gelu", c_gelu, 1, {IN(SH2, F32, -3, 3)}, true, false},
    {"silu", c_silu, 1, {IN(SH2, F32, -3, 3)}, true, false},
    {"cross_entropy", c_cross_entropy, 2, {IN(SH2, F32, -3, 3), IN(SH2, F32, -1, 1)}, true, false},
    {"quantize + dequantize", c_quant_roundtrip, 1, {IN(3, {2, 3, 64}, F32, -2, 3)}, false, false, true},
    {"quantize + dequantize bf16", c_quant_roundtrip, 1, {IN(2, {3, 96}, PN_BFLOAT16, -2, 3)}, false, false},
    {"quantized_matmul small M", c_qmm, 2, {IN(2, {3, 64}, F32, -1, 1), IN(2, {24, 64}, F32, -1, 1)}, false, false},
    {"quantized_matmul GEMM f16", c_qmm, 2, {IN(3, {2, 12, 64}, PN_FLOAT16, -1, 1), IN(2, {16, 64}, PN_FLOAT16, -1, 1)}, false, false, true},
    {"quantized_matmul batched W", c_qmm, 2, {IN(3, {2, 3, 32}, F32, -1, 1), IN(3, {2, 8, 32}, F32, -1, 1)}, false, false},
    {"quantized_matmul x @ W small M", c_qmm_n, 2, {IN(2, {3, 32}, F32, -1, 1), IN(2, {32, 64}, F32, -1, 1)}, false, false},
    {"quantized_matmul x @ W GEMM", c_qmm_n, 2, {IN(3, {2, 10, 64}, F32, -1, 1), IN(2, {64, 32}, F32, -1, 1)}, false, false},
    {"quantize + dequantize fp modes", c_fp_roundtrip, 1, {IN(3, {2, 3, 64}, F32, -3, 3)}, false, false},
    {"quantize + dequantize fp modes bf16", c_fp_roundtrip, 1, {IN(2, {3, 96}, PN_BFLOAT16, -3, 3)}, false, false},
    {"quantized_matmul fp modes small M", c_fp_qmm_t, 2, {IN(2, {3, 64}, F32, -1, 1), IN(2, {24, 64}, F32, -1, 1)}, false, false},
    {"quantized_matmul fp modes GEMM f16", c_fp_qmm_t, 2, {IN(3, {2, 12, 64}, PN_FLOAT16, -1, 1), IN(2, {16, 64}, PN_FLOAT16, -1, 1)}, false, false, true},
    {"quantized_matmul fp modes x @ W", c_fp_qmm_nt, 2, {IN(3, {2, 3, 32}, F32, -1, 1), IN(2, {32, 64}, F32, -1, 1)}, false, false},
    {"quantized_matmul fp modes x @ W GEMM", c_fp_qmm_nt, 2, {IN(2, {20, 32}, F32, -1, 1), IN(2, {32, 64}, F32, -1, 1)}, false, false},
    {"gather_qmm mxfp4", c_gather_qmm, 2, {IN(3, {4, 2, 64}, F32, -1, 1), IN(3, {3, 32, 64}, F32, -1, 1)}, false, false},
    {"svd values", c_svd_values, 1, {IN(3, {3, 5, 4}, F32, -1, 1)}, true, false},
    {"svd vectors", c_svd_vectors, 1, {IN(3, {2, 4, 6}, F32, -1, 1)}, true, false},
    {"svd vectors f64", c_svd_vectors, 1, {IN(2, {6, 4}, PN_FLOAT64, -1, 1)}, true, false},
    {"eigh", c_eigh, 1, {IN(3, {3, 5, 5}, F32, -1, 1)}, false, false},
    {"eigh f64", c_eigh, 1, {IN(3, {2, 5, 5}, PN_FLOAT64, -1, 1)}, true, false},
    {"eigvalsh upper f64", c_eigvalsh_upper, 1, {IN(2, {6, 6}, PN_FLOAT64, -1, 1)}, true, false},
    /* batches of small matrices (<= 32: the GPU's batched Jacobi solvers), singular ones, and
     * the 32 / 33 boundary */
    {"svd_batched values f64", c_svd_values, 1, {IN(4, {2, 3, 6, 5}, PN_FLOAT64, -1, 1)}, false, false},
    {"svd_batched vectors f32", c_svd_vectors, 1, {IN(3, {5, 3, 7}, F32, -1, 1)}, false, false},
    {"svd_batched vectors f64", c_svd_vectors, 1, {IN(3, {4, 6, 6}, PN_FLOAT64, -1, 1)}, false, false},
    {"svd_batched lowrank f32", c_svd_values_lowrank, 2, {IN(3, {3, 6, 2}, F32, -1, 1), IN(3, {3, 2, 5}, F32, -1, 1)}, false, false},
    {"svd_batched lowrank f64", c_svd_values_lowrank, 2, {IN(3, {3, 5, 2}, PN_FLOAT64, -1, 1), IN(3, {3, 2, 7}, PN_FLOAT64, -1, 1)}, false, false},
    {"svd_batched 32 f64", c_svd_values, 1, {IN(3, {2, 32, 20}, PN_FLOAT64, -1, 1)}, false, false},
    {"svd_batched 33 f64", c_svd_values, 1, {IN(3, {2, 33, 4}, PN_FLOAT64, -1, 1)}, false, false},
    {"eigh_batched f32", c_eigh, 1, {IN(3, {6, 4, 4}, F32, -1, 1)}, false, false},
    {"eigh_batched f64", c_eigh, 1, {IN(4, {2, 3, 7, 7}, PN_FLOAT64, -1, 1)}, false, false},
    {"eigh_batched upper f32", c_eigvalsh_upper, 1, {IN(3, {4, 8, 8}, F32, -1, 1)}, false, false},
    {"eigh_batched singular f32", c_eigvalsh_gram, 1, {IN(3, {3, 6, 2}, F32, -1, 1)}, false, false},
    {"eigh_batched singular f64", c_eigvalsh_gram, 1, {IN(3, {3, 7, 3}, PN_FLOAT64, -1, 1)}, false, false},
    {"eigh_batched 32 f64", c_eigvalsh_upper, 1, {IN(3, {2, 32, 32}, PN_FLOAT64, -1, 1)}, false, false},
    {"eigh_batched 33 f64", c_eigvalsh_upper, 1, {IN(3, {2, 33, 33}, PN_FLOAT64, -1, 1)}, false, false},
    {"lu_factor batched f64", c_lu_factor, 1, {IN(3, {4, 6, 6}, PN_FLOAT64, -1, 1)}, false, false},
    /* batches of small square matrices: one getrfBatched call on the GPU */
    {"lu_factor batched f32", c_lu_factor, 1, {IN(4, {2, 3, 5, 5}, F32, -1, 1)}, true, false},
    {"lu_factor batched 32 f64", c_lu_factor, 1, {IN(3, {2, 32, 32}, PN_FLOAT64, -1, 1)}, false, false},
    {"lu_factor batched 33 f64", c_lu_factor, 1, {IN(3, {2, 33, 33}, PN_FLOAT64, -1, 1)}, false, false},
    {"lu rows batched", c_lu_rows, 1, {IN(3, {4, 6, 6}, F32, -1, 1)}, false, false},
    {"solve_triangular batched 32 f64", c_solve_tri_upper, 2, {IN(3, {3, 32, 32}, PN_FLOAT64, -1, 1), IN(3, {3, 32, 5}, PN_FLOAT64, -1, 1)}, false, false},
    {"solve_triangular batched 33", c_solve_tri_lower, 2, {IN(3, {2, 33, 33}, F32, -1, 1), IN(3, {2, 33, 3}, F32, -1, 1)}, false, false},
    {"qr Q", c_qr_q, 1, {IN(3, {2, 6, 4}, F32, -1, 1)}, true, false},
    {"qr R", c_qr_r, 1, {IN(3, {2, 6, 4}, F32, -1, 1)}, true, false},
    {"qr Q wide f64", c_qr_q, 1, {IN(2, {3, 7}, PN_FLOAT64, -1, 1)}, true, false},
    {"qr R wide f64", c_qr_r, 1, {IN(2, {3, 7}, PN_FLOAT64, -1, 1)}, true, false},
    {"qr R batched f64", c_qr_r, 1, {IN(4, {2, 3, 5, 5}, PN_FLOAT64, -1, 1)}, false, false},
    {"eig", c_eig, 1, {IN(3, {3, 7, 7}, F32, -1, 1)}, false, false},
    {"eig f64", c_eig, 1, {IN(2, {6, 6}, PN_FLOAT64, -1, 1)}, false, false},
    {"eigvals", c_eigvals, 1, {IN(3, {2, 5, 5}, F32, -1, 1)}, false, false},
    {"lu_factor", c_lu_factor, 1, {IN(3, {2, 5, 5}, F32, -1, 1)}, true, false},
    {"lu_factor wide f64", c_lu_factor, 1, {IN(2, {4, 6}, PN_FLOAT64, -1, 1)}, false, false},
    {"lu row indices", c_lu_rows, 1, {IN(3, {3, 6, 4}, F32, -1, 1)}, false, false},
    {"pinv", c_pinv, 1, {IN(3, {2, 5, 3}, F32, -1, 1)}, true, false},
    {"solve_triangular lower", c_solve_tri_lower, 2, {IN(3, {2, 6, 6}, F32, -1, 1), IN(3, {2, 6, 3}, F32, -1, 1)}, true, false},
    {"solve_triangular upper f64 bcast", c_solve_tri_upper, 2, {IN(2, {5, 5}, PN_FLOAT64, -1, 1), IN(3, {3, 5, 2}, PN_FLOAT64, -1, 1)}, true, false},
    {"solve_triangular vector", c_solve_tri_lower, 2, {IN(2, {7, 7}, F32, -1, 1), IN(1, {7}, F32, -1, 1)}, true, false},
    {"inv", c_inv, 1, {IN(3, {3, 5, 5}, F32, -1, 1)}, true, false},
    {"inv f64", c_inv, 1, {IN(2, {9, 9}, PN_FLOAT64, -1, 1)}, true, false},
    {"solve", c_solve, 2, {IN(3, {2, 6, 6}, F32, -1, 1), IN(3, {2, 6, 4}, F32, -1, 1)}, true, false},
    {"tri_inv upper", c_tri_inv, 1, {IN(3, {2, 4, 4}, PN_FLOAT64, -1, 1)}, true, false},
    {"cholesky", c_cholesky, 1, {IN(3, {2, 6, 6}, F32, -1, 1)}, true, false},
    {"cholesky f64", c_cholesky, 1, {IN(2, {8, 8}, PN_FLOAT64, -1, 1)}, true, false},
};

TEST(cpu_and_gpu_agree)
{
    pn_device gpu = dev_of(PN_GPU);
    if (!pn_is_available(gpu)) {
        printf("test_backends: skipped, no GPU: %s\n", pn_gpu_unavailable_reason());
        return;
    }
    int n = (int)(sizeof CASES / sizeof *CASES);
    int failures_before = test_failures;
    pnC_count_kernels(true); /* for every_primitive_ran_on_both_backends */
    for (int i = 0; i < n; i++) {
        int f = test_failures;
        run_case(&CASES[i]);
        if (test_failures != f) printf("  case failed: %s\n", CASES[i].name);
    }
    printf("test_backends: %d cases, %d failed\n", n, test_failures - failures_before);
}

/* OptimUpdate (parameter, gradient and up to two slots in, parameter and slots out, no vjp:
 * outside the table) on both devices over the same inputs, for every rule and option, every
 * floating dtype, 16-byte aligned (packed accesses) or not (dense views at an offset of one
 * element). Dense inputs must run on the GPU without a fallback. */
TEST(optim_update_cpu_and_gpu_agree)
{
    if (!pn_is_available(dev_of(PN_GPU))) return;
    static const struct {
        const char *name;
        pnN_optim_params prm;
    } rules[] = {
        {"sgd+wd", {PNN_OPT_SGD, PNN_OPT_WD, {0.01, 0.1}}},
        {"momentum+wd+damp", {PNN_OPT_MOMENTUM, PNN_OPT_WD | PNN_OPT_DAMP, {0.01, 0.05, 0.9, 0.7}}},
        {"nesterov", {PNN_OPT_MOMENTUM, PNN_OPT_NESTEROV, {0, 0.05, 0.9, 1}}},
        {"adam", {PNN_OPT_ADAM, 0, {0.9, 0.1, 0.999, 1e-3, 1e-8, 1, 1e-2, 1}}},
        {"adamw+bias", {PNN_OPT_ADAM, 0, {0.9, 0.1, 0.999, 1e-3, 1e-8, 0.999, 0.0526, 22.4}}},
        {"rmsprop", {PNN_OPT_RMSPROP, 0, {0.99, 0.01, 1e-2, 1e-8}}},
        {"adagrad", {PNN_OPT_ADAGRAD, 0, {0.1, 1e-8}}},
        {"adadelta", {PNN_OPT_ADADELTA, 0, {0.9, 0.1, 1e-6, 1.0}}},
        {"adamax", {PNN_OPT_ADAMAX, 0, {0.9, 0.1, 0.999, 2e-3, 1e-8}}},
        {"lion+wd", {PNN_OPT_LION, PNN_OPT_WD, {0.9, 0.1, 0.99, 0.01, 0.9999, 1e-3}}},
    };
    const pn_dtype dtypes[] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16, PN_BFLOAT16};
    for (size_t r = 0; r < sizeof rules / sizeof *rules; r++)
        for (size_t d = 0; d < sizeof dtypes / sizeof *dtypes; d++)
            for (int layout = 0; layout < 3; layout++) { /* unaligned, aligned, strided g */
                const bool aligned = layout > 0;
                pn_scope_push();
                const pnN_optim_params *c = &rules[r].prm;
                const int ns = pnN_optim_nslots(c->rule), nin = 2 + ns, nout = 1 + ns;
                pn_array *x[4], *y[2][3] = {{NULL}};
                for (int k = 0; k < nin; k++) { /* slots >= 0: second moments */
                    double lo = k >= 2 ? 0 : -1;
                    if (layout == 2 && k == 1) { /* a transposed product's gradient */
                        x[k] = test_random_array((int64_t[]){65, 37}, 2, dtypes[d], lo, 1);
                        x[k] = pn_transpose(x[k], NULL, 0);
                        continue;
                    }
                    if (aligned) {
                        x[k] = test_random_array((int64_t[]){37, 65}, 2, dtypes[d], lo, 1);
                        continue;
                    }
                    x[k] = test_random_array((int64_t[]){2406}, 1, dtypes[d], lo, 1);
                    x[k] = pn_slice(x[k], (int64_t[]){1}, (int64_t[]){2406}, NULL, 1);
                }
                CHECK(pn_eval(x, nin) == 0);
                int64_t fell_back = 0;
                for (int dev = 0; dev < 2; dev++) {
                    int64_t before = pnC_gpu_fallback_count();
                    CHECK(pn_stream_push(pn_default_stream(dev_of(dev ? PN_GPU : PN_CPU))) == 0);
                    CHECK(pnN_optim_update(x[0], x[1], x + 2, c, y[dev]) == 0);
                    pn_stream_pop();
                    CHECK(pn_eval(y[dev], nout) == 0);
                    if (dev) fell_back = pnC_gpu_fallback_count() - before;
                }
                char what[96];
                for (int j = 0; j < nout; j++) {
                    snprintf(what, sizeof what, "optim_update %s %s%s output %d", rules[r].name,
                             pn_dtype_name(dtypes[d]),
                             layout == 2 ? " strided g" : aligned ? "" : " unaligned", j);
                    if (y[1][j])
                        CHECK_MSG(y[1][j]->buf && y[1][j]->buf->device && y[1][j]->buf->device_valid,
                                  "%s: no device copy", what);
                    compare(what, y[1][j], y[0][j], false);
                }
                CHECK_MSG(fell_back == 0, "optim_update %s %s fell back to the CPU", rules[r].name,
                          pn_dtype_name(dtypes[d]));
                pn_scope_pop();
            }
}

/* The cases above ran every primitive through its own kernel on each backend: every
 * primitive of the registry (each elementwise op its own) and the fused Compiled node, on the
 * CPU and on the GPU, with no fallback counted as GPU. Skipped: primitives with no kernel on
 * either side (the tracer's, which only marks a transformation's inputs). Not in the registry:
 * CustomKernel (GPU only, user source: test_custom_kernel). Runs after the two tests above
 * (registration order); alone, it has nothing to look at and says so. */
TEST(every_primitive_ran_on_both_backends)
{
    if (!pn_is_available(dev_of(PN_GPU))) return;
    if (!pnC_kernel_calls(&binary_prims[PNK_B_ADD], PN_CPU)) {
        printf("test_backends: every_primitive_ran_on_both_backends needs the cases run first\n");
        return;
    }
    int missing = 0;
    for (int i = 0; i <= pnR_count(); i++) {
        const pnC_primitive *p = i < pnR_count() ? pnR_at(i) : &pnF_compiled_prim;
        if (!p->eval[PN_CPU] && !p->eval[PN_GPU]) continue; /* never evaluated */
        for (int d = 0; d < 2; d++) {
            pn_device_type dev = d ? PN_GPU : PN_CPU;
            if (pnC_kernel_calls(p, dev) > 0) continue;
            printf("  %s never ran on the %s\n", p->name, d ? "GPU" : "CPU");
            missing++;
        }
    }
    CHECK_MSG(missing == 0, "%d primitive/backend pairs had no case", missing);
}
