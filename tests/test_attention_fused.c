/* test_attention_fused.c — the fused ScaledDotProductAttention primitives (src/ops/attention.c,
 * backend/cpu/attention.c): forward values and logsumexp against float64 math written here over
 * dtypes, masks, causal alignments, grouped-query heads and odd sizes; the fused path against
 * the composite of ops; gradients (q, k, v, a float mask) and second derivatives by finite
 * differences; the logsumexp output's cotangent and attention sinks through the fused
 * backward; vmap against per-slice calls; jvp. Run with PONTE_DEVICE=gpu on the simulator. */
#include "core/core.h"
#include "harness.h"
#include "io/registry.h"
#include "ops/attention.h"

#include <float.h>
#include <string.h>

enum { M_NONE, M_CAUSAL, M_BOOL, M_ADD }; /* the mask kinds of a case */

typedef struct cfg {
    int64_t B, Hq, Hkv, Lq, Lk, D, Dv;
    int mode;
    int mrank; /* additive / bool mask: 2 = (Lq, Lk), 4 = (B, 1, Lq, Lk) */
    int dead;  /* bool mask: row dead - 1 (of every batch) drops every key; 0: none */
} cfg;

/* The element of a mask of shape (Lq, Lk) or (B, 1, Lq, Lk) that (b, i, j) reads. */
static double mask_at(const cfg *c, const double *m, int64_t b, int64_t i, int64_t j)
{
    return m[((c->mrank == 4 ? b : 0) * c->Lq + i) * c->Lk + j];
}

/* The float64 attention of one query row (b, h, i): writes o[Dv], returns the logsumexp. */
static double ref_row(const cfg *c, double scale, const double *q, const double *k, const double *v,
                      const double *m, int64_t b, int64_t h, int64_t i, double *o, double *s)
{
    int64_t g = h / (c->Hq / c->Hkv), kb = (b * c->Hkv + g) * c->Lk;
    const double *qr = q + ((b * c->Hq + h) * c->Lq + i) * c->D;
    double mx = -INFINITY, z = 0;
    for (int64_t j = 0; j < c->Lk; j++) {
        double a = 0;
        for (int64_t d = 0; d < c->D; d++) a += qr[d] * k[(kb + j) * c->D + d];
        a *= scale;
        bool drop = (c->mode == M_CAUSAL && j > i + c->Lk - c->Lq) ||
                    (c->mode == M_BOOL && mask_at(c, m, b, i, j) == 0);
        if (c->mode == M_ADD) a += mask_at(c, m, b, i, j);
        s[j] = drop ? -DBL_MAX : a;
        mx = s[j] > mx ? s[j] : mx;
    }
    for (int64_t j = 0; j < c->Lk; j++) z += s[j] = exp(s[j] - mx);
    for (int64_t d = 0; d < c->Dv; d++) {
        o[d] = 0;
        for (int64_t j = 0; j < c->Lk; j++) o[d] += s[j] / z * v[(kb + j) * c->Dv + d];
    }
    return mx + log(z);
}

/* Random inputs of c in dtype t: x[0..2] = q, k, v; x[3] the mask or NULL. */
static void make_inputs(const cfg *c, pn_dtype t, pn_array **x)
{
    x[0] = test_random_array((int64_t[]){c->B, c->Hq, c->Lq, c->D}, 4, t, -1.5, 1.5);
    x[1] = test_random_array((int64_t[]){c->B, c->Hkv, c->Lk, c->D}, 4, t, -1.5, 1.5);
    x[2] = test_random_array((int64_t[]){c->B, c->Hkv, c->Lk, c->Dv}, 4, t, -1, 1);
    x[3] = NULL;
    int64_t ms[4] = {c->B, 1, c->Lq, c->Lk};
    const int64_t *shape = c->mrank == 4 ? ms : ms + 2;
    if (c->mode == M_BOOL) /* about a third dropped; some rows fully dropped when Lk is small */
        x[3] = pn_greater(test_random_array(shape, c->mrank, PN_FLOAT32, 0, 1), pn_weak_float(0.33));
    if (c->mode == M_BOOL && c->dead) {
        int64_t at[4] = {0, 0, c->dead - 1, 0}, to[4] = {c->B, 1, c->dead, c->Lk}, one[4] = {c->B, 1, 1, c->Lk};
        const int off = c->mrank == 4 ? 0 : 2;
        pn_array *none = pn_full(one + off, c->mrank, pn_scalar(0, PN_BOOL), PN_BOOL);
        x[3] = pn_slice_update(x[3], none, at + off, to + off, NULL, c->mrank);
    }
    if (c->mode == M_ADD) x[3] = test_random_array(shape, c->mrank, t, -2, 1);
}

static pn_array *attend(const cfg *c, pn_array *const *x, double scale)
{
    return pn_fast_scaled_dot_product_attention(x[0], x[1], x[2], scale,
                                                c->mode == M_CAUSAL ? "causal" : "", x[3]);
}

/* Forward of c in dtype t against the float64 reference (of the inputs as rounded to t). */
static void check_forward(const cfg *c, pn_dtype t, double tol)
{
    pn_scope_push();
    pn_array *x[4];
    make_inputs(c, t, x);
    double scale = 1.0 / sqrt((double)c->D);
    pn_array *y = attend(c, x, scale);
    CHECK_OK(y);
    if (!y) {
        pn_scope_pop();
        return;
    }
    CHECK_MSG(y->node && strcmp(y->node->prim->name, "ScaledDotProductAttention") == 0,
              "the fused node is built");
    double *q = test_to_f64(x[0]), *k = test_to_f64(x[1]), *v = test_to_f64(x[2]);
    double *m = x[3] ? test_to_f64(x[3]) : NULL;
    int64_t rows = c->B * c->Hq * c->Lq;
    double *ref = malloc(sizeof(double) * (size_t)(rows * c->Dv + 1));
    double *s = malloc(sizeof(double) * (size_t)(c->Lk + 1));
    for (int64_t r = 0; r < rows; r++)
        ref_row(c, scale, q, k, v, m, r / (c->Hq * c->Lq), r / c->Lq % c->Hq, r % c->Lq, ref + r * c->Dv, s);
    char what[160];
    snprintf(what, sizeof what, "sdpa %s B%lld Hq%lld Hkv%lld Lq%lld Lk%lld D%lld Dv%lld mode%d/%d",
             pn_dtype_name(t), (long long)c->B, (long long)c->Hq, (long long)c->Hkv, (long long)c->Lq,
             (long long)c->Lk, (long long)c->D, (long long)c->Dv, c->mode, c->mrank);
    test_check_values(what, y, (int64_t[]){c->B, c->Hq, c->Lq, c->Dv}, 4, t, ref, tol, tol);
    free(q), free(k), free(v), free(m), free(ref), free(s);
    pn_scope_pop();
}

static const cfg FORWARD[] = {
    {2, 4, 4, 7, 7, 16, 16, M_NONE, 0},
    {1, 2, 2, 1, 1, 1, 1, M_NONE, 0},
    {2, 4, 2, 7, 7, 16, 16, M_CAUSAL, 0},    /* GQA, causal Lq == Lk */
    {1, 4, 1, 5, 64, 16, 24, M_CAUSAL, 0},   /* Hkv = 1, causal Lq < Lk, Dv != D */
    {1, 2, 2, 9, 4, 8, 8, M_CAUSAL, 0},      /* Lq > Lk: the first rows see no key */
    {2, 2, 2, 64, 64, 80, 80, M_BOOL, 2},
    {2, 4, 2, 7, 3, 16, 5, M_BOOL, 4},       /* short rows: some fully dropped */
    {2, 2, 1, 7, 64, 16, 16, M_ADD, 2},
    {2, 2, 2, 64, 7, 1, 3, M_ADD, 4},
    {1, 2, 2, 300, 300, 16, 16, M_CAUSAL, 0},
    {1, 1, 1, 300, 300, 80, 48, M_BOOL, 2},
};

TEST(forward_against_float64)
{
    int n = (int)(sizeof FORWARD / sizeof FORWARD[0]);
    for (int i = 0; i < n; i++) {
        check_forward(&FORWARD[i], PN_FLOAT32, 2e-5);
        check_forward(&FORWARD[i], PN_FLOAT64, 1e-11);
        /* halves: the kernels accumulate in float32, only the result is rounded */
        check_forward(&FORWARD[i], PN_FLOAT16, 4e-3);
        check_forward(&FORWARD[i], PN_BFLOAT16, 2e-2);
    }
}

/* The fused node's logsumexp output against the reference. */
TEST(logsumexp_output)
{
    pn_scope_push();
    cfg c = {2, 4, 2, 9, 33, 16, 8, M_CAUSAL, 0};
    pn_array *x[4];
    make_inputs(&c, PN_FLOAT32, x);
    pn_array *y = attend(&c, x, 0.3);
    CHECK_OK(y);
    pn_scope_push();
    pn_array *lse = y ? pnC_node_output(y->node, 1) : NULL;
    CHECK_OK(lse);
    if (lse) {
        double *q = test_to_f64(x[0]), *k = test_to_f64(x[1]), *v = test_to_f64(x[2]);
        int64_t rows = c.B * c.Hq * c.Lq;
        double *ref = malloc(sizeof(double) * (size_t)rows), o[8], s[33];
        for (int64_t r = 0; r < rows; r++)
            ref[r] = ref_row(&c, 0.3, q, k, v, NULL, r / (c.Hq * c.Lq), r / c.Lq % c.Hq, r % c.Lq, o, s);
        test_check_values("sdpa lse", lse, (int64_t[]){c.B, c.Hq, c.Lq}, 3, PN_FLOAT32, ref, 1e-5, 1e-5);
        free(q), free(k), free(v), free(ref);
    }
    pn_scope_pop();
    pn_scope_pop();
}

/* The op as a closure over (q, k, v[, float mask]); a bool mask is held in the context. */
typedef struct op_ctx {
    const cfg *c;
    double scale;
    pn_array *bool_mask;
} op_ctx;

static int op_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const op_ctx *o = ctx;
    pn_array *x[4] = {in[0], in[1], in[2], nin > 3 ? in[3] : o->bool_mask};
    out[0] = attend(o->c, x, o->scale);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* y and the gradients of every differentiable input for cotangent cot. 0 or -1. */
static int value_and_vjp(const cfg *c, pn_array *const *x, double scale, pn_array *cot, pn_array **y,
                         pn_array **g)
{
    op_ctx o = {c, scale, c->mode == M_BOOL ? x[3] : NULL};
    int nin = c->mode == M_ADD ? 4 : 3, n = 0;
    pn_closure *f = pn_closure_new(op_fn, &o, NULL);
    int rc = f ? pn_vjp(f, nin, x, 1, &cot, &n, y, g) : -1;
    pn_closure_release(f);
    return rc;
}

/* Values and gradients of the fused path against the composite of ops (pnO_sdpa_set_fused),
 * optionally with a NaN in q. */
static void fused_vs_composite(const cfg *c, pn_dtype t, bool nan_q, double tol)
{
    pn_scope_push();
    pn_array *x[4];
    make_inputs(c, t, x);
    if (nan_q) { /* one NaN in q's first row */
        pn_array *nan = pn_full((int64_t[]){1, 1, 1, 1}, 4, pn_scalar(NAN, t), t);
        x[0] = pn_slice_update(x[0], nan, (int64_t[]){0, 0, 0, 0}, (int64_t[]){1, 1, 1, 1}, NULL, 4);
    }
    pn_array *cot = test_random_array((int64_t[]){c->B, c->Hq, c->Lq, c->Dv}, 4, t, -1, 1);
    pn_array *y[2] = {NULL}, *g[2][4] = {{NULL}};
    for (int f = 0; f < 2; f++) {
        bool was = pnO_sdpa_set_fused(f == 0);
        CHECK(value_and_vjp(c, x, 0.7, cot, &y[f], g[f]) == 0);
        pnO_sdpa_set_fused(was);
    }
    char what[96];
    snprintf(what, sizeof what, "fused vs composite %s mode %d Lq %lld", pn_dtype_name(t), c->mode,
             (long long)c->Lq);
    double *ref = y[1] ? test_to_f64(y[1]) : NULL;
    if (ref && y[0]) test_check_values(what, y[0], y[1]->shape, 4, t, ref, tol, tol);
    free(ref);
    for (int i = 0; i < 4; i++) {
        if (!g[1][i]) continue;
        CHECK_MSG(g[0][i], "%s: fused gradient %d missing", what, i);
        ref = test_to_f64(g[1][i]);
        char gw[128];
        snprintf(gw, sizeof gw, "%s grad %d", what, i);
        if (ref && g[0][i])
            test_check_values(gw, g[0][i], g[1][i]->shape, g[1][i]->ndim, g[1][i]->dtype, ref, tol, tol);
        free(ref);
    }
    pn_scope_pop();
}

TEST(fused_matches_composite)
{
    int n = (int)(sizeof FORWARD / sizeof FORWARD[0]);
    for (int i = 0; i < n; i++) {
        fused_vs_composite(&FORWARD[i], PN_FLOAT32, false, 5e-5);
        fused_vs_composite(&FORWARD[i], PN_FLOAT64, false, 1e-10);
    }
    fused_vs_composite(&FORWARD[2], PN_FLOAT32, true, 5e-5); /* NaN spreads over its row */
    fused_vs_composite(&FORWARD[5], PN_FLOAT32, true, 5e-5);
}

#ifdef PONTE_HAS_GPU
#include "backend/cuda/attention.h"
#endif

/* The gradients g16[0..2] of q, k and v (dtype half) against float32's g32, within half's
 * tolerance (float16 1e-2, bfloat16 5e-2); what names the case. */
static void check_half_grads(const char *what, pn_array *const *g16, pn_array *const *g32, pn_dtype half)
{
    const double tol = half == PN_BFLOAT16 ? 5e-2 : 1e-2;
    for (int k = 0; k < 3; k++) {
        if (!g16[k] || !g32[k]) {
            CHECK_MSG(0, "%s: gradient %d missing", what, k);
            continue;
        }
        double *ref = test_to_f64(g32[k]);
        char name[160];
        snprintf(name, sizeof name, "%s grad %d", what, k);
        test_check_values(name, g16[k], g32[k]->shape, 4, half, ref, tol, tol);
        free(ref);
    }
}

/* Shapes the GPU's tensor-core kernels take (half types, head dims multiples of 16 up to 256,
 * 16 query rows or more): tiles of 64 rows and chunks of 64 keys (32 above
 * 128 dims) cut mid-way, grouped-query heads, every mask kind, causal with Lq < Lk and Lq > Lk,
 * a row that a bool mask drops whole. Values and logsumexp against float64; the gradients (the
 * tensor-core backward, reading the forward's logsumexp) against float32's; on
 * the GPU, the tensor-core kernels must have run. */
static const cfg TENSOR_CORE[] = {
    {1, 2, 2, 64, 64, 64, 64, M_NONE, 0},
    {2, 4, 2, 80, 144, 64, 32, M_CAUSAL, 0},  /* GQA, causal Lq < Lk, Dv != D */
    {1, 2, 1, 100, 70, 128, 128, M_CAUSAL, 0}, /* Lq > Lk: the first rows see no key */
    {1, 2, 2, 33, 130, 32, 48, M_BOOL, 4},
    {2, 2, 2, 70, 65, 16, 16, M_ADD, 2},
    {1, 1, 1, 16, 200, 96, 64, M_ADD, 4},
    {1, 2, 2, 128, 128, 128, 128, M_NONE, 0},  /* whole tiles and chunks */
    {2, 4, 2, 70, 90, 64, 128, M_ADD, 4},      /* GQA, Dv > D */
    {1, 2, 1, 90, 100, 256, 256, M_CAUSAL, 0}, /* 256 dims: 32-key chunks */
    {1, 2, 2, 40, 75, 256, 160, M_BOOL, 2},
    {1, 2, 2, 48, 100, 64, 64, M_BOOL, 2, 6},  /* row 5 drops every key */
};

TEST(tensor_core_forward)
{
    int n = (int)(sizeof TENSOR_CORE / sizeof TENSOR_CORE[0]);
#ifdef PONTE_HAS_GPU
    const bool gpu = pn_default_device().type == PN_GPU;
    const int64_t before = pnG_sdpa_tensor_core_count();
#endif
    for (int i = 0; i < n; i++) {
        check_forward(&TENSOR_CORE[i], PN_FLOAT16, 4e-3);
        check_forward(&TENSOR_CORE[i], PN_BFLOAT16, 2e-2);
    }
#ifdef PONTE_HAS_GPU
    if (gpu) {
        int64_t ran = pnG_sdpa_tensor_core_count() - before;
        CHECK_MSG(ran == 2 * n, "%lld of %d forwards took the tensor cores", (long long)ran, 2 * n);
    }
    /* one buffer of key / value chunks where two do not fit the shared memory: head dims
     * above 128 under 80 KiB, up to 128 under the default 48 KiB (where above 128 the CUDA-core
     * kernel runs) */
    const size_t limits[2] = {81920, 49152};
    for (int l = 0; l < 2 && gpu; l++) {
        const size_t was = pnG_sdpa_set_smem_limit(limits[l]);
        for (int i = 0; i < n; i++) {
            const int64_t dm = TENSOR_CORE[i].D > TENSOR_CORE[i].Dv ? TENSOR_CORE[i].D : TENSOR_CORE[i].Dv;
            if ((l == 0) != (dm > 128)) continue;
            check_forward(&TENSOR_CORE[i], PN_FLOAT16, 4e-3);
            check_forward(&TENSOR_CORE[i], PN_BFLOAT16, 2e-2);
        }
        pnG_sdpa_set_smem_limit(was);
    }
#endif
    /* logsumexp and gradients (the backward reads the forward's logsumexp) */
    const pn_dtype halves[2] = {PN_FLOAT16, PN_BFLOAT16};
    for (int i = 1; i < n; i++) {
        const cfg *c = &TENSOR_CORE[i];
        for (int h = 0; h < 2; h++) {
            pn_scope_push();
            pn_array *x[4], *x32[4] = {NULL};
            make_inputs(c, halves[h], x);
            for (int k = 0; k < 4; k++)
                x32[k] = x[k] && pn_array_dtype(x[k]) != PN_BOOL ? pn_astype(x[k], PN_FLOAT32) : x[k];
            pn_array *y = attend(c, x, 0.125);
            pn_array *lse = y ? pnC_node_output(y->node, 1) : NULL;
            CHECK_OK(lse);
            /* rows that see no key hold fill + log(keys) in lse, the reference -inf: left out */
            if (lse && !(c->mode == M_CAUSAL && c->Lq > c->Lk) && !c->dead) {
                double *q = test_to_f64(x[0]), *k = test_to_f64(x[1]), *v = test_to_f64(x[2]);
                double *m = x[3] ? test_to_f64(x[3]) : NULL;
                int64_t rows = c->B * c->Hq * c->Lq;
                double *ref = malloc(sizeof(double) * (size_t)rows), o[256], sc[256];
                for (int64_t r = 0; r < rows; r++)
                    ref[r] = ref_row(c, 0.125, q, k, v, m, r / (c->Hq * c->Lq), r / c->Lq % c->Hq, r % c->Lq, o, sc);
                test_check_values("tensor-core sdpa lse", lse, (int64_t[]){c->B, c->Hq, c->Lq}, 3,
                                  pn_array_dtype(lse), ref, 1e-4, 1e-4);
                free(q), free(k), free(v), free(m), free(ref);
            }
            pn_array *cot = test_random_array((int64_t[]){c->B, c->Hq, c->Lq, c->Dv}, 4, halves[h], -1, 1);
            pn_array *cot32 = pn_astype(cot, PN_FLOAT32);
            pn_array *y16 = NULL, *y32 = NULL, *g16[4] = {NULL}, *g32[4] = {NULL};
#ifdef PONTE_HAS_GPU
            const int64_t at = pnG_sdpa_tensor_core_count();
#endif
            CHECK(value_and_vjp(c, x, 0.125, cot, &y16, g16) == 0);
            for (int k = 0; k < 3; k++) CHECK(g16[k] && pn_eval(&g16[k], 1) == 0);
#ifdef PONTE_HAS_GPU
            /* the forward, dq and dkv kernels, all on the tensor cores (a float mask's gradient
             * takes the composite of ops) */
            const int64_t want = 3;
            if (gpu && c->mode != M_ADD)
                CHECK_MSG(pnG_sdpa_tensor_core_count() - at == want, "case %d: %lld tensor-core launches for a value and vjp",
                          i, (long long)(pnG_sdpa_tensor_core_count() - at));
#endif
            CHECK(value_and_vjp(c, x32, 0.125, cot32, &y32, g32) == 0);
            char what[96];
            snprintf(what, sizeof what, "tensor-core sdpa %s case %d", pn_dtype_name(halves[h]), i);
            check_half_grads(what, g16, g32, halves[h]);
            pn_scope_pop();
        }
    }
    /* a NaN in q spreads over its row (the fused backward's too), as in the composite */
#ifdef PONTE_HAS_GPU
    const int64_t at = pnG_sdpa_tensor_core_count();
#endif
    fused_vs_composite(&TENSOR_CORE[0], PN_FLOAT16, true, 3e-2);
#ifdef PONTE_HAS_GPU
    if (gpu) CHECK_MSG(pnG_sdpa_tensor_core_count() > at, "the NaN case took the tensor cores");
#endif
}

/* Shapes of the tensor-core backward beyond the forward's (head dims 160, 192 and 256, Dv != D)
 * and at D = 128, each under several caps of the shared memory (pnG_sdpa_set_smem_limit; see
 * TC_LIMITS), where the launchers take the smaller tiles (32 or 16 rows a block, chunks of 32)
 * and one buffer of chunks instead of two: tiles cut mid-way, grouped-query heads, causal with
 * Lq < Lk and Lq > Lk (chunks left out, across the group's heads), a bool mask and a constant
 * additive mask (the backward's max-and-sum pass). Gradients of q, k, v in float16 / bfloat16
 * against float32's; on the GPU, the dq and dk / dv kernels must both have run on the tensor
 * cores. */
static const cfg TC_BACKWARD[] = {
    {1, 2, 1, 100, 70, 128, 128, M_CAUSAL, 0}, /* Lq > Lk: the first rows see no key */
    {2, 2, 2, 48, 40, 128, 128, M_ADD, 2},
    {1, 4, 2, 40, 72, 160, 160, M_CAUSAL, 0}, /* GQA, causal Lq < Lk */
    {1, 2, 2, 33, 50, 160, 160, M_BOOL, 4},
    {1, 2, 1, 40, 36, 256, 192, M_NONE, 0}, /* Dv != D */
    {1, 1, 1, 20, 24, 256, 256, M_ADD, 4},
    {1, 4, 2, 100, 70, 256, 256, M_CAUSAL, 0}, /* GQA, causal Lq > Lk */
    {1, 2, 1, 60, 90, 192, 192, M_CAUSAL, 0},
    {1, 2, 2, 40, 50, 192, 192, M_ADD, 2},
};

/* The caps of TC_BACKWARD's runs and the head dims each takes (0: all; 1: above 128 only; -1:
 * up to 128 only). sdpa_dkv_tc_kernel (above 128) takes two buffers of query chunks (its
 * launcher: the largest tile, with two buffers where they fit) at 192 dims under the device's
 * 227 KiB and the 99 KiB of an sm_86 / sm_89, at 256 x 256 under 188 KiB and at 256 x 192
 * under 160 KiB, one buffer in the other runs of those dims; at the default 48 KiB only head
 * dims up to 128 have a tensor-core tile (two warps share a row group: 32 x 32 tiles). */
static const struct {
    size_t bytes;
    int dims;
} TC_LIMITS[] = {{0, 0}, {192512, 1}, {163840, 1}, {101376, 0}, {49152, -1}};

/* y and the gradients of q, k, v for cotangent cot, any mask x[3] a constant. 0 or -1. */
static int value_and_vjp_qkv(const cfg *c, pn_array *const *x, double scale, pn_array *cot, pn_array **y,
                             pn_array **g)
{
    op_ctx o = {c, scale, x[3]};
    int n = 0;
    pn_closure *f = pn_closure_new(op_fn, &o, NULL);
    int rc = f ? pn_vjp(f, 3, x, 1, &cot, &n, y, g) : -1;
    pn_closure_release(f);
    return rc;
}

TEST(tensor_core_backward_tiles)
{
    const int n = (int)(sizeof TC_BACKWARD / sizeof TC_BACKWARD[0]);
    const pn_dtype halves[2] = {PN_FLOAT16, PN_BFLOAT16};
#ifdef PONTE_HAS_GPU
    const bool gpu = pn_default_device().type == PN_GPU;
#endif
    for (int l = 0; l < (int)(sizeof TC_LIMITS / sizeof TC_LIMITS[0]); l++) {
        const size_t limit = TC_LIMITS[l].bytes;
#ifdef PONTE_HAS_GPU
        const size_t was = pnG_sdpa_set_smem_limit(limit);
#endif
        for (int i = 0; i < n; i++) {
            const cfg *c = &TC_BACKWARD[i];
            const bool above = c->D > 128 || c->Dv > 128;
            if ((TC_LIMITS[l].dims > 0 && !above) || (TC_LIMITS[l].dims < 0 && above)) continue;
            const double scale = 1.0 / sqrt((double)c->D);
            for (int h = 0; h < 2; h++) {
                pn_scope_push();
                pn_array *x[4], *x32[4] = {NULL};
                make_inputs(c, halves[h], x);
                for (int k = 0; k < 4; k++)
                    x32[k] = x[k] && pn_array_dtype(x[k]) != PN_BOOL ? pn_astype(x[k], PN_FLOAT32) : x[k];
                pn_array *cot = test_random_array((int64_t[]){c->B, c->Hq, c->Lq, c->Dv}, 4, halves[h], -1, 1);
                pn_array *cot32 = pn_astype(cot, PN_FLOAT32);
                pn_array *y16 = NULL, *y32 = NULL, *g16[3] = {NULL}, *g32[3] = {NULL};
#ifdef PONTE_HAS_GPU
                /* the forward alone first: what it adds to the count (its own choice) */
                int64_t at = pnG_sdpa_tensor_core_count();
                pn_array *fwd = attend(c, x, scale);
                CHECK(fwd && pn_eval(&fwd, 1) == 0);
                const int64_t fwd_tc = pnG_sdpa_tensor_core_count() - at;
                at = pnG_sdpa_tensor_core_count();
#endif
                CHECK(value_and_vjp_qkv(c, x, scale, cot, &y16, g16) == 0);
                for (int k = 0; k < 3; k++) CHECK(g16[k] && pn_eval(&g16[k], 1) == 0);
#ifdef PONTE_HAS_GPU
                if (gpu) {
                    const int64_t ran = pnG_sdpa_tensor_core_count() - at;
                    CHECK_MSG(ran == fwd_tc + 2, "limit %zu case %d %s: %lld tensor-core launches, want %lld + 2",
                              limit, i, pn_dtype_name(halves[h]), (long long)ran, (long long)fwd_tc);
                }
#endif
                CHECK(value_and_vjp_qkv(c, x32, scale, cot32, &y32, g32) == 0);
                char what[128];
                snprintf(what, sizeof what, "tc backward limit %zu %s case %d", limit, pn_dtype_name(halves[h]), i);
                check_half_grads(what, g16, g32, halves[h]);
                pn_scope_pop();
            }
        }
#ifdef PONTE_HAS_GPU
        pnG_sdpa_set_smem_limit(was);
#endif
    }
}

/* Shapes of the GPU's split-key decoding forward (fewer than 16 query rows, 128 keys or more):
 * one row and a few, grouped-query heads, every mask kind, causal with Lq < Lk, a head dim of 1.
 * Values against float64 in every dtype, and values and gradients (the backward reads the
 * decoding forward's logsumexp) against the composite of ops; on the GPU, the decoding kernels
 * must have run. */
static const cfg DECODE[] = {
    {2, 4, 2, 1, 300, 64, 64, M_NONE, 0},
    {1, 2, 2, 3, 200, 16, 24, M_CAUSAL, 0},
    {1, 2, 1, 4, 130, 80, 48, M_BOOL, 4},
    {2, 2, 2, 1, 257, 32, 16, M_ADD, 2},
    {1, 1, 1, 8, 129, 1, 3, M_CAUSAL, 0},
};

TEST(decode_forward)
{
    int n = (int)(sizeof DECODE / sizeof DECODE[0]);
#ifdef PONTE_HAS_GPU
    const bool gpu = pn_default_device().type == PN_GPU;
    const int64_t before = pnG_sdpa_decode_count();
#endif
    for (int i = 0; i < n; i++) {
        check_forward(&DECODE[i], PN_FLOAT32, 2e-5);
        check_forward(&DECODE[i], PN_FLOAT64, 1e-11);
        check_forward(&DECODE[i], PN_FLOAT16, 4e-3);
        check_forward(&DECODE[i], PN_BFLOAT16, 2e-2);
    }
#ifdef PONTE_HAS_GPU
    if (gpu)
        CHECK_MSG(pnG_sdpa_decode_count() - before == 4 * n, "%lld of %d forwards took the decoding kernels",
                  (long long)(pnG_sdpa_decode_count() - before), 4 * n);
#endif
    for (int i = 0; i < n; i++) {
        fused_vs_composite(&DECODE[i], PN_FLOAT32, false, 5e-5);
        fused_vs_composite(&DECODE[i], PN_FLOAT64, false, 1e-10);
    }
    fused_vs_composite(&DECODE[0], PN_FLOAT32, true, 5e-5); /* NaN spreads over its row */
}

/* A float mask of -inf entries: rows that keep nothing give NaN, as the composite does. */
TEST(minus_inf_rows)
{
    pn_scope_push();
    cfg c = {1, 1, 1, 3, 4, 2, 2, M_ADD, 2};
    pn_array *x[4];
    make_inputs(&c, PN_FLOAT32, x);
    double mv[12] = {0, -INFINITY, 0, 0, -INFINITY, -INFINITY, -INFINITY, -INFINITY, 1, 2, 3, -INFINITY};
    x[3] = pn_array_from_data(mv, (int64_t[]){3, 4}, 2, PN_FLOAT64);
    x[3] = pn_astype(x[3], PN_FLOAT32);
    pn_array *y = attend(&c, x, 1.0);
    bool was = pnO_sdpa_set_fused(false);
    pn_array *r = attend(&c, x, 1.0);
    pnO_sdpa_set_fused(was);
    double *a = test_to_f64(y), *b = test_to_f64(r);
    for (int i = 0; a && b && i < 6; i++)
        CHECK_MSG((isnan(a[i]) && isnan(b[i])) || fabs(a[i] - b[i]) < 1e-5, "element %d: %g vs %g", i, a[i], b[i]);
    CHECK(a && isnan(a[2]) && isnan(a[3]) && !isnan(a[0]) && !isnan(a[4]));
    free(a), free(b);
    pn_scope_pop();
}

/* ───────────── rows that an additive mask pushes to huge negative scores ───────────── */

/* Float64 math of an M_ADD case with the mask m (Lq, Lk), the scores rounded to float32 when the
 * compute type is (a -1e9 row then holds equal scores, and its softmax is uniform, as MLX
 * computes it): out, dq, dk, dv for cotangent dout, back to back in ref (zeroed). */
static void ref_masked(const cfg *c, pn_dtype t, double scale, const double *q, const double *k,
                       const double *v, const double *m, const double *dout, double *ref)
{
    int64_t rows = c->B * c->Hq * c->Lq, rep = c->Hq / c->Hkv;
    double *out = ref, *dq = out + rows * c->Dv, *dk = dq + rows * c->D, *dv = dk + c->B * c->Hkv * c->Lk * c->D;
    double *p = malloc(sizeof(double) * (size_t)c->Lk);
    for (int64_t r = 0; r < rows; r++) {
        int64_t b = r / (c->Hq * c->Lq), h = r / c->Lq % c->Hq, i = r % c->Lq, kb = (b * c->Hkv + h / rep) * c->Lk;
        const double *qr = q + r * c->D, *dor = dout + r * c->Dv;
        double mx = -INFINITY, z = 0, dd = 0;
        for (int64_t j = 0; j < c->Lk; j++) {
            double a = 0;
            for (int64_t d = 0; d < c->D; d++) a += qr[d] * k[(kb + j) * c->D + d];
            a = t == PN_FLOAT64 ? a * scale + m[i * c->Lk + j] : (float)((float)(a * scale) + (float)m[i * c->Lk + j]);
            p[j] = a, mx = a > mx ? a : mx;
        }
        for (int64_t j = 0; j < c->Lk; j++) z += p[j] = exp(p[j] - mx); /* a row of -inf: NaN */
        for (int64_t j = 0; j < c->Lk; j++) p[j] /= z;
        for (int64_t d = 0; d < c->Dv; d++) {
            for (int64_t j = 0; j < c->Lk; j++) out[r * c->Dv + d] += p[j] * v[(kb + j) * c->Dv + d];
            dd += dor[d] * out[r * c->Dv + d];
        }
        for (int64_t j = 0; j < c->Lk; j++) {
            double dp = 0;
            for (int64_t d = 0; d < c->Dv; d++) dp += dor[d] * v[(kb + j) * c->Dv + d];
            double ds = p[j] * (dp - dd);
            for (int64_t d = 0; d < c->D; d++) {
                dq[r * c->D + d] += scale * ds * k[(kb + j) * c->D + d];
                dk[(kb + j) * c->D + d] += scale * ds * qr[d];
            }
            for (int64_t d = 0; d < c->Dv; d++) dv[(kb + j) * c->Dv + d] += p[j] * dor[d];
        }
    }
    free(p);
}

/* The fused forward and q, k, v gradients (the fused vjp: the mask's gradient is not asked)
 * with row 1 of the mask all `fill` and row 4 alternately -inf and fill (finfo.min when fill
 * is -inf), against ref_masked. */
static void check_masked_rows(pn_dtype t, double fill, double tol)
{
    pn_scope_push();
    cfg c = {2, 2, 1, 6, 9, 5, 3, M_ADD, 2}; /* grouped heads: a NaN row reaches its kv head's dk, dv */
    pn_array *x[4];
    make_inputs(&c, t, x);
    double *mv = test_to_f64(x[3]);
    for (int64_t j = 0; mv && j < c.Lk; j++) {
        mv[1 * c.Lk + j] = fill;
        mv[4 * c.Lk + j] = j % 2 ? -INFINITY : isfinite(fill) ? fill : t == PN_FLOAT64 ? -DBL_MAX : -FLT_MAX;
    }
    if (mv) x[3] = pn_astype(pn_array_from_data(mv, (int64_t[]){c.Lq, c.Lk}, 2, PN_FLOAT64), t);
    pn_array *cot = test_random_array((int64_t[]){c.B, c.Hq, c.Lq, c.Dv}, 4, t, -1, 1);
    op_ctx o = {&c, 0.7, x[3]};
    pn_closure *f = pn_closure_new(op_fn, &o, NULL);
    pn_array *y = NULL, *g[3] = {NULL};
    int n = 0;
    CHECK(f && pn_vjp(f, 3, x, 1, &cot, &n, &y, g) == 0);
    pn_closure_release(f);
    double *q = test_to_f64(x[0]), *k = test_to_f64(x[1]), *v = test_to_f64(x[2]), *m = test_to_f64(x[3]);
    double *dout = test_to_f64(cot);
    int64_t rows = c.B * c.Hq * c.Lq, kv = c.B * c.Hkv * c.Lk;
    double *ref = calloc((size_t)(rows * (c.Dv + c.D) + kv * (c.D + c.Dv)), sizeof(double));
    if (q && k && v && m && dout && ref && y && g[0] && g[1] && g[2]) {
        ref_masked(&c, t, 0.7, q, k, v, m, dout, ref);
        char what[96];
        snprintf(what, sizeof what, "sdpa %s rows of %g", pn_dtype_name(t), fill);
        test_check_values(what, y, (int64_t[]){c.B, c.Hq, c.Lq, c.Dv}, 4, t, ref, tol, tol);
        const double *r = ref + rows * c.Dv;
        const char *names[3] = {"dq", "dk", "dv"};
        for (int i = 0; i < 3; i++) {
            char gw[128];
            snprintf(gw, sizeof gw, "%s %s", what, names[i]);
            test_check_values(gw, g[i], x[i]->shape, 4, t, r, 5 * tol, 5 * tol);
            r += pn_size(x[i]);
        }
    }
    free(mv), free(q), free(k), free(v), free(m), free(dout), free(ref);
    pn_scope_pop();
}

/* Rows of -1e9 or finfo.min are uniform over their keys in the forward and the gradients; a row
 * of -inf is NaN, and so are its dq row and its kv head's dk and dv (as MLX). */
TEST(huge_negative_rows)
{
    check_masked_rows(PN_FLOAT32, -1e9, 2e-5);
    check_masked_rows(PN_FLOAT32, -FLT_MAX, 2e-5);
    check_masked_rows(PN_FLOAT32, -INFINITY, 2e-5);
    check_masked_rows(PN_FLOAT64, -1e9, 1e-6); /* the scores keep ~1e-7 of qk at 1e9 */
    check_masked_rows(PN_FLOAT64, -DBL_MAX, 1e-10);
    check_masked_rows(PN_FLOAT64, -INFINITY, 1e-10);
    check_masked_rows(PN_BFLOAT16, -1e9, 2e-2);
}

/* ───────────── derivatives ───────────── */

typedef struct gc_ctx {
    cfg c;
    double scale;
    pn_array *bool_mask;
    bool second; /* output dq of a vjp instead of the values */
    pn_array *cot;
} gc_ctx;

static pn_array *gc_fn(void *ctx, pn_array *const *in)
{
    gc_ctx *g = ctx;
    pn_array *x[4] = {in[0], in[1], in[2], g->c.mode == M_ADD ? in[3] : g->bool_mask};
    if (!g->second) return attend(&g->c, x, g->scale);
    pn_array *y = NULL, *gr[4] = {NULL};
    pn_array *cot = pn_astype(g->cot, pn_array_dtype(in[0]));
    if (value_and_vjp(&g->c, x, g->scale, cot, &y, gr)) return NULL;
    /* every gradient enters the output, so each second derivative is checked */
    pn_array *s = pn_add(pn_sum(pn_multiply(gr[1], gr[1]), NULL, 0, false), pn_sum(gr[2], NULL, 0, false));
    return pn_add(gr[0], s);
}

static void check_grads(cfg c, bool second)
{
    pn_scope_push();
    pn_array *x[4];
    make_inputs(&c, PN_FLOAT64, x);
    gc_ctx g = {c, 0.6, c.mode == M_BOOL ? x[3] : NULL, second, NULL};
    g.cot = test_random_array((int64_t[]){c.B, c.Hq, c.Lq, c.Dv}, 4, PN_FLOAT64, -1, 1);
    char what[64];
    snprintf(what, sizeof what, "sdpa grads mode %d%s", c.mode, second ? " (second)" : "");
    CHECK(test_gradcheck(what, gc_fn, &g, c.mode == M_ADD ? 4 : 3, x, 1e-6));
    pn_scope_pop();
}

TEST(gradients_by_finite_differences)
{
    check_grads((cfg){2, 4, 2, 5, 5, 3, 2, M_CAUSAL, 0}, false);
    check_grads((cfg){1, 2, 1, 3, 6, 4, 3, M_CAUSAL, 0}, false);
    check_grads((cfg){1, 2, 2, 4, 3, 2, 2, M_CAUSAL, 0}, false); /* Lq > Lk */
    check_grads((cfg){2, 2, 2, 4, 5, 3, 3, M_BOOL, 4}, false);
    check_grads((cfg){1, 2, 2, 3, 4, 2, 3, M_NONE, 0}, false);
}

TEST(float_mask_gradient)
{
    check_grads((cfg){2, 2, 1, 3, 4, 2, 2, M_ADD, 4}, false);
    check_grads((cfg){1, 2, 2, 3, 4, 2, 2, M_ADD, 2}, false);
}

TEST(second_derivatives)
{
    check_grads((cfg){1, 2, 1, 3, 4, 2, 2, M_CAUSAL, 0}, true);
    check_grads((cfg){1, 2, 2, 3, 3, 2, 2, M_BOOL, 2}, true);
    check_grads((cfg){1, 1, 1, 2, 3, 2, 2, M_ADD, 2}, true);
}

/* ───────────── lse's cotangent and attention sinks ───────────── */

/* f(q, k, v[, float mask]) = rowsum(out * cw) + lse * lw (B, Hq, Lq), lse the fused node's
 * second output, so both of the node's cotangents are set; without with_out, lse * lw alone
 * (out's cotangent is then absent). */
typedef struct lse_ctx {
    cfg c;
    pn_array *bool_mask, *cw, *lw;
    bool with_out;
} lse_ctx;

static pn_array *lse_fn(void *ctx, pn_array *const *in)
{
    lse_ctx *l = ctx;
    pn_array *x[4] = {in[0], in[1], in[2], l->c.mode == M_ADD ? in[3] : l->bool_mask};
    pn_array *y = attend(&l->c, x, 0.6);
    pn_array *lse = y && y->node ? pnC_node_output(y->node, 1) : NULL;
    if (!lse) return NULL;
    /* rows that see no key have lse near finfo.min, which lw would overflow: held at -1e3 */
    pn_array *r = pn_multiply(pn_maximum(lse, pn_weak_float(-1e3)), l->lw);
    return l->with_out ? pn_add(r, pn_sum(pn_multiply(y, l->cw), (int[]){-1}, 1, false)) : r;
}

/* Sinks attention as a closure over (q, k, v, sinks) for test_gradcheck; with second set,
 * the gradients of a vjp with cotangent cot folded into one output, so each second
 * derivative is checked. */
typedef struct sink_ctx {
    cfg c;
    pn_array *mask, *cot;
    bool second;
} sink_ctx;

static pn_array *sink_attend(const sink_ctx *s, pn_array *const *in)
{
    return pn_fast_scaled_dot_product_attention_sinks(in[0], in[1], in[2], 0.6,
                                                      s->c.mode == M_CAUSAL ? "causal" : "", s->mask, in[3]);
}

static int sink_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    (void)nin;
    out[0] = sink_attend(ctx, in);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* y = sinks attention at x (q, k, v, sinks) and g its gradients for cotangent cot. 0 or -1. */
static int sink_vjp(sink_ctx *s, pn_array *const *x, pn_array *cot, pn_array **y, pn_array **g)
{
    pn_closure *f = pn_closure_new(sink_fn, s, NULL);
    int n = 0, rc = f ? pn_vjp(f, 4, x, 1, &cot, &n, y, g) : -1;
    pn_closure_release(f);
    return rc;
}

static pn_array *sink_gc_fn(void *ctx, pn_array *const *in)
{
    sink_ctx *s = ctx;
    if (!s->second) return sink_attend(s, in);
    pn_array *y = NULL, *g[4] = {NULL};
    if (sink_vjp(s, in, pn_astype(s->cot, pn_array_dtype(in[0])), &y, g)) return NULL;
    pn_array *r = pn_add(pn_sum(pn_multiply(g[1], g[1]), NULL, 0, false), pn_sum(g[2], NULL, 0, false));
    r = pn_add(r, pn_sum(pn_multiply(g[3], g[3]), NULL, 0, false));
    return pn_add(g[0], r);
}

/* Random sinks attention inputs of c in dtype t: x[0..2] q, k, v, x[3] the sinks; *mask the
 * bool or float mask of c (no gradient taken through it here). */
static void make_sink_inputs(const cfg *c, pn_dtype t, pn_array **x, pn_array **mask)
{
    pn_array *m[4];
    make_inputs(c, t, m);
    x[0] = m[0], x[1] = m[1], x[2] = m[2], *mask = m[3];
    x[3] = test_random_array((int64_t[]){c->Hq}, 1, t, -1, 2);
}

static const cfg SINK_CASES[] = {
    {2, 4, 2, 5, 6, 4, 3, M_CAUSAL, 0},
    {1, 2, 2, 4, 3, 3, 2, M_CAUSAL, 0}, /* Lq > Lk */
    {2, 2, 1, 3, 5, 3, 3, M_BOOL, 4},
    {1, 2, 2, 4, 4, 2, 3, M_ADD, 2},
    {1, 3, 3, 3, 4, 2, 2, M_NONE, 0},
};

/* lse's cotangent (alone and beside out's) by finite differences, through the fused backward. */
TEST(lse_cotangent_by_finite_differences)
{
    for (size_t i = 0; i < sizeof SINK_CASES / sizeof SINK_CASES[0]; i++)
        for (int with_out = 0; with_out < 2; with_out++) {
            pn_scope_push();
            const cfg *c = &SINK_CASES[i];
            pn_array *x[4];
            make_inputs(c, PN_FLOAT64, x);
            lse_ctx l = {*c, c->mode == M_BOOL ? x[3] : NULL,
                         test_random_array((int64_t[]){c->Dv}, 1, PN_FLOAT64, -1, 1),
                         test_random_array((int64_t[]){c->Lq}, 1, PN_FLOAT64, -2, 2), with_out};
            char what[64];
            snprintf(what, sizeof what, "sdpa lse cotangent case %zu with out %d", i, with_out);
            CHECK(test_gradcheck(what, lse_fn, &l, c->mode == M_ADD ? 4 : 3, x, 1e-6));
            pn_scope_pop();
        }
}

/* Sinks' gradients (q, k, v and the sinks) and second derivatives by finite differences. */
TEST(sinks_gradients_by_finite_differences)
{
    for (size_t i = 0; i < sizeof SINK_CASES / sizeof SINK_CASES[0]; i++)
        for (int second = 0; second < 2; second++) {
            pn_scope_push();
            const cfg *c = &SINK_CASES[i];
            pn_array *x[4];
            sink_ctx s = {*c, NULL, test_random_array((int64_t[]){c->B, c->Hq, c->Lq, c->Dv}, 4, PN_FLOAT64, -1, 1),
                          second};
            make_sink_inputs(c, PN_FLOAT64, x, &s.mask);
            char what[64];
            snprintf(what, sizeof what, "sdpa sinks case %zu%s", i, second ? " (second)" : "");
            CHECK(test_gradcheck(what, sink_gc_fn, &s, 4, x, 1e-6));
            pn_scope_pop();
        }
}

/* Sinks' values and gradients, fused against the composite of ops, in float32 and float16; the
 * fused gradient runs one fused backward node and no matmul. */
TEST(sinks_fused_backward_matches_composite)
{
    const pn_dtype types[] = {PN_FLOAT32, PN_FLOAT16};
    for (size_t i = 0; i < sizeof SINK_CASES / sizeof SINK_CASES[0]; i++)
        for (size_t ti = 0; ti < 2; ti++) {
            pn_scope_push();
            const cfg *c = &SINK_CASES[i];
            pn_dtype t = types[ti];
            pn_array *x[4], *y[2] = {NULL}, *g[2][4] = {{NULL}};
            sink_ctx s = {*c, NULL, test_random_array((int64_t[]){c->B, c->Hq, c->Lq, c->Dv}, 4, t, -1, 1), false};
            make_sink_inputs(c, t, x, &s.mask);
            int64_t vjp_calls = 0, mm_calls = 0;
            for (int f = 0; f < 2; f++) {
                bool was = pnO_sdpa_set_fused(f == 0);
                pnC_count_kernels(true);
                int64_t v0 = pnC_kernel_calls(&sdpa_vjp_prim, PN_CPU) + pnC_kernel_calls(&sdpa_vjp_prim, PN_GPU);
                int64_t m0 = pnC_kernel_calls(&matmul_prim, PN_CPU) + pnC_kernel_calls(&matmul_prim, PN_GPU);
                CHECK(sink_vjp(&s, x, s.cot, &y[f], g[f]) == 0);
                pn_array *all[5] = {y[f], g[f][0], g[f][1], g[f][2], g[f][3]};
                CHECK(pn_eval(all, 5) == 0);
                if (f == 0) {
                    vjp_calls = pnC_kernel_calls(&sdpa_vjp_prim, PN_CPU) + pnC_kernel_calls(&sdpa_vjp_prim, PN_GPU) - v0;
                    mm_calls = pnC_kernel_calls(&matmul_prim, PN_CPU) + pnC_kernel_calls(&matmul_prim, PN_GPU) - m0;
                }
                pnC_count_kernels(false);
                pnO_sdpa_set_fused(was);
            }
            CHECK_MSG(vjp_calls == 1 && mm_calls == 0, "sinks case %zu: %lld fused backward calls, %lld matmuls",
                      i, (long long)vjp_calls, (long long)mm_calls);
            double tol = t == PN_FLOAT32 ? 5e-5 : 2e-2;
            for (int j = -1; j < 4; j++) {
                pn_array *a = j < 0 ? y[0] : g[0][j], *r = j < 0 ? y[1] : g[1][j];
                double *ref = r ? test_to_f64(r) : NULL;
                char what[80];
                snprintf(what, sizeof what, "sinks case %zu %s %s", i, pn_dtype_name(t), j < 0 ? "values" : "grad");
                CHECK_MSG(a && ref, "%s %d missing", what, j);
                if (a && ref) test_check_values(what, a, r->shape, r->ndim, t, ref, tol, tol);
                free(ref);
            }
            pn_scope_pop();
        }
}

/* ───────────── vmap ───────────── */

typedef struct vm_ctx {
    cfg c;
    pn_array *mask;
} vm_ctx;

static int vm_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    vm_ctx *v = ctx;
    pn_array *x[4] = {in[0], in[1], in[2], v->mask};
    out[0] = attend(&v->c, x, 0.5);
    *nout = 1;
    return out[0] ? 0 : -1;
}

/* vmap over q's axis 0, v's axis 2 (k unmapped) against a loop of calls. */
static void check_vmap(cfg c)
{
    pn_scope_push();
    pn_array *x[4];
    make_inputs(&c, PN_FLOAT32, x);
    int64_t V = 3;
    pn_array *qb = test_random_array((int64_t[]){V, c.B, c.Hq, c.Lq, c.D}, 5, PN_FLOAT32, -1, 1);
    pn_array *vb = test_random_array((int64_t[]){c.B, c.Hkv, V, c.Lk, c.Dv}, 5, PN_FLOAT32, -1, 1);
    vm_ctx ctx = {c, x[3]};
    pn_closure *f = pn_closure_new(vm_fn, &ctx, NULL);
    pn_closure *vf = pn_vmap(f, (int[]){0, -1, 2}, 3, (int[]){1}, 1);
    pn_array *out[1] = {NULL}, *in[3] = {qb, x[1], vb};
    int n = 0;
    CHECK(vf && pn_closure_call(vf, 3, in, &n, out) == 0);
    pn_array *parts[3];
    for (int64_t i = 0; i < V; i++) {
        pn_array *xi[4] = {pn_take(qb, pn_scalar_int(i, PN_INT32), 0), x[1],
                           pn_take(vb, pn_scalar_int(i, PN_INT32), 2), x[3]};
        parts[i] = attend(&c, xi, 0.5);
    }
    pn_array *ref = pn_stack(parts, 3, 1);
    double *r = test_to_f64(ref);
    if (r && out[0]) test_check_values("sdpa vmap", out[0], ref->shape, 5, PN_FLOAT32, r, 1e-5, 1e-5);
    free(r);
    pn_closure_release(vf), pn_closure_release(f);
    pn_scope_pop();
}

TEST(vmap_folds_into_batch)
{
    check_vmap((cfg){2, 4, 2, 5, 6, 4, 3, M_CAUSAL, 0});
    check_vmap((cfg){2, 2, 2, 5, 6, 4, 4, M_BOOL, 4});
    check_vmap((cfg){1, 2, 1, 5, 6, 4, 4, M_ADD, 2});
}

/* Empty batches, no keys and zero head dims give what the composite gives (zeros, uniform). */
TEST(empty_shapes)
{
    static const cfg cases[] = {
        {0, 2, 2, 3, 4, 2, 2, M_NONE, 0},
        {1, 2, 2, 3, 0, 2, 2, M_NONE, 0},
        {1, 2, 1, 3, 4, 0, 2, M_CAUSAL, 0},
        {1, 2, 2, 3, 4, 2, 0, M_NONE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pn_scope_push();
        pn_array *x[4];
        make_inputs(&cases[i], PN_FLOAT32, x);
        pn_array *y = attend(&cases[i], x, 0.5);
        bool was = pnO_sdpa_set_fused(false);
        pn_array *r = attend(&cases[i], x, 0.5);
        pnO_sdpa_set_fused(was);
        double *ref = r ? test_to_f64(r) : NULL;
        CHECK_OK(y);
        if (y && ref) test_check_values("sdpa empty", y, r->shape, 4, PN_FLOAT32, ref, 1e-6, 1e-6);
        free(ref);
        pn_scope_pop();
    }
}
