/* attention.c — scaled dot-product attention as two fused primitives: ScaledDotProductAttention
 * (q, k, v[, mask] -> out and the rows' logsumexp, flash-attention style) and its backward
 * ScaledDotProductAttentionVjp (q, k, v[, mask], out, lse, dout[, dlse] -> dq, dk, dv in one
 * pass; dlse, the cotangent of lse, enters as D - dlse where the rows' D = rowsum(dout * out)
 * is subtracted: d lse / d s_j = P_j, so dS_j = P_j (dP_j - D + dlse)).
 * The composite of ops that they replace stays here: it is the reference semantics, the path
 * of pnO_sdpa_set_fused(false), and what the rarely needed rules (a float mask's gradient,
 * jvp, second derivatives) differentiate. vmap folds the mapped axis into the batch. */
#include "ops/attention.h"

#include "backend/cpu/attention.h"
#include "backend/cuda/eval.h"

#include <float.h>
#include <stdlib.h>

/* The lowest finite value of a floating dtype (numpy's finfo(t).min). */
static double finfo_min(pn_dtype t)
{
    switch (t) {
    case PN_FLOAT16: return -65504.0;
    case PN_BFLOAT16: return -3.3895313892515355e38;
    case PN_FLOAT32: return -(double)FLT_MAX;
    default: return -DBL_MAX;
    }
}

/* The dtype of the logsumexp output: float32, float64 for float64. */
static pn_dtype lse_dtype(pn_dtype t) { return t == PN_FLOAT64 ? PN_FLOAT64 : PN_FLOAT32; }

/* ───────────────────────────── the composite ───────────────────────────── */

/* softmax(scale * q @ k^T masked) @ v with ops, q, k, v in the result dtype and m NULL or the
 * mask broadcast to (B, Hq, Lq, Lk) (bool, or additive in the result dtype). The softmax runs
 * in float32 for half types; the other steps in the result dtype. lse (when not NULL) gets
 * the rows' logsumexp (B, Hq, Lq) in lse_dtype. Arrays belong to the current scope. */
static pn_array *composite(const pnK_sdpa_params *p, pn_array *q, pn_array *k, pn_array *v,
                           pn_array *m, pn_array **lse)
{
    pn_dtype t = pn_array_dtype(q);
    int64_t hq = pn_dim(q, 1), hkv = pn_dim(k, 1), rep = hq / hkv, lq = pn_dim(q, 2), lk = pn_dim(k, 2);
    pn_array *qs = pn_multiply(pn_scalar(p->scale, t), q), *ks = k, *vs = v;
    if (rep > 1) { /* grouped-query attention: (B, Hkv, rep, L, D) against (B, Hkv, 1, L, D) */
        int ax = 2;
        qs = pn_unflatten(qs, 1, (int64_t[]){hkv, rep}, 2);
        ks = pn_expand_dims(ks, &ax, 1);
        vs = pn_expand_dims(vs, &ax, 1);
        if (m) m = pn_unflatten(m, 1, (int64_t[]){hkv, rep}, 2);
    }
    pn_array *scores = pn_matmul(qs, pn_swapaxes(ks, -1, -2));
    if (p->causal) { /* lower-right aligned: query i sees keys j <= i + (Lk - Lq) */
        int a1 = 1, a0 = 0;
        pn_array *qi = pn_expand_dims(pn_arange((double)(lk - lq), (double)lk, 1, PN_INT64), &a1, 1);
        pn_array *ki = pn_expand_dims(pn_arange(0, (double)lk, 1, PN_INT64), &a0, 1);
        m = pn_greater_equal(qi, ki);
    }
    if (m) {
        if (pn_array_dtype(m) == PN_BOOL) scores = pn_where(m, scores, pn_scalar(p->fill, t));
        else scores = pn_add(scores, m);
    }
    int axis = -1;
    pn_array *out = pn_matmul(pn_softmax(scores, &axis, 1, true), vs);
    if (lse) *lse = pn_logsumexp(pn_astype(scores, lse_dtype(t)), &axis, 1, false);
    if (rep > 1) {
        out = pn_flatten(out, 1, 2);
        if (lse) *lse = pn_flatten(*lse, 1, 2);
    }
    return out;
}

/* The composite as closures, for the rules that differentiate it: "forward" maps (q, k, v[,
 * mask]) to out (and lse when with_lse); "backward" maps (q, k, v[, mask], dout[, dlse when
 * with_lse]) to the forward's (dq, dk, dv), the vjp of the composite. */
typedef struct rule_ctx {
    pnK_sdpa_params p;
    bool with_lse;
} rule_ctx;

static int forward_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const rule_ctx *c = ctx;
    out[1] = NULL;
    out[0] = composite(&c->p, in[0], in[1], in[2], nin > 3 ? in[3] : NULL, c->with_lse ? &out[1] : NULL);
    *nout = c->with_lse ? 2 : 1;
    return out[0] && (!c->with_lse || out[1]) ? 0 : -1;
}

static int backward_fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    rule_ctx fc = *(const rule_ctx *)ctx;
    int nc = fc.with_lse ? 2 : 1;
    pn_closure *f = pn_closure_new(forward_fn, &fc, NULL);
    pn_array *y[2], *g[4] = {NULL};
    int n = 0;
    int rc = f ? pn_vjp(f, nin - nc, in, nc, &in[nin - nc], &n, y, g) : -1;
    pn_closure_release(f);
    for (int i = 0; i < 3; i++) out[i] = g[i];
    *nout = 3;
    return rc;
}

/* ───────────────────────────── the primitives ───────────────────────────── */

const pnC_primitive sdpa_prim, sdpa_vjp_prim;

/* The inputs of a node before out, lse, dout: q, k, v and the mask when there is one. */
static int n_qkvm(const pnK_sdpa_params *p) { return p->mask == PNK_SDPA_NO_MASK ? 3 : 4; }

/* Whether a ScaledDotProductAttentionVjp node has lse's cotangent as its last input. */
static bool has_dlse(const pnC_node *nd)
{
    return nd->nin == n_qkvm(PNC_PARAMS(nd, pnK_sdpa_params)) + 4;
}

/* The outputs of a node of prim (sdpa_prim: out, lse; sdpa_vjp_prim: dq, dk, dv) over ins.
 * 0 or -1. */
static int sdpa_make(const pnC_primitive *prim, const pnK_sdpa_params *p, int nin,
                     pn_array *const *ins, pn_array **out)
{
    if (!pnC_inputs_ok(prim->name, nin, ins)) return -1;
    pn_dtype t = pn_array_dtype(ins[0]);
    if (prim == &sdpa_vjp_prim) {
        const int64_t *shapes[3] = {pn_shape(ins[0]), pn_shape(ins[1]), pn_shape(ins[2])};
        return pnC_make_multi(prim, p, sizeof *p, nin, ins, 3, (pn_dtype[]){t, t, t}, shapes,
                              (int[]){4, 4, 4}, out);
    }
    const int64_t *q = pn_shape(ins[0]);
    int64_t os[4] = {q[0], q[1], q[2], pn_dim(ins[2], 3)};
    return pnC_make_multi(prim, p, sizeof *p, nin, ins, 2, (pn_dtype[]){t, lse_dtype(t)},
                          (const int64_t *[]){os, q}, (int[]){4, 3}, out);
}

/* zeros for a NULL cotangent or tangent of x. */
static pn_array *or_zeros(pn_array *t, pn_array *x) { return t ? t : pn_zeros_like(x); }

/* Runs pn_vjp of the closure fn(ctx) at the primals with the cotangents (NULL: zeros of the
 * outputs `like`), into g. 0 or -1. */
static int vjp_of(pn_fn fn, rule_ctx *ctx, int np, pn_array *const *primals, int nc,
                  pn_array *const *cot, pn_array *const *like, pn_array **g)
{
    pn_array *c[3], *y[4];
    for (int i = 0; i < nc; i++) c[i] = or_zeros(cot[i], like[i]);
    pn_closure *f = pn_closure_new(fn, ctx, NULL);
    int n = 0, rc = f ? pn_vjp(f, np, primals, nc, c, &n, y, g) : -1;
    pn_closure_release(f);
    return rc;
}

static int jvp_of(pn_fn fn, rule_ctx *ctx, int np, pn_array *const *primals,
                  pn_array *const *tan, pn_array **out_tan)
{
    pn_array *t[6], *y[4];
    for (int i = 0; i < np; i++) t[i] = or_zeros(tan[i], primals[i]);
    pn_closure *f = pn_closure_new(fn, ctx, NULL);
    int n = 0, rc = f ? pn_jvp(f, np, primals, t, &n, y, out_tan) : -1;
    pn_closure_release(f);
    return rc;
}

/* Moves the grads of the inputs named by argnums from all[] (per input) and keeps them. */
static int finish_grads(int rc, pn_array **all, const int *argnums, int nargs, pn_array **grads)
{
    for (int i = 0; i < nargs; i++) grads[i] = rc ? NULL : all[argnums[i]];
    pn_scope_pop_keep(grads, nargs);
    return rc;
}

/* out = the fused node's outputs; cot[0] for out, cot[1] for lse. One fused backward node
 * (given lse's cotangent as its last input when there is one), unless a float mask's
 * cotangent is asked for: then the composite's vjp. */
static int sdpa_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                    pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_sdpa_params *p = PNC_PARAMS(nd, pnK_sdpa_params);
    int nm = n_qkvm(p);
    bool mask_grad = false;
    for (int i = 0; i < nargs; i++) mask_grad |= argnums[i] == 3 && p->mask == PNK_SDPA_ADD_MASK;
    pn_array *all[4] = {NULL};
    pn_scope_push();
    int rc = 0;
    if (mask_grad) {
        rule_ctx c = {*p, true};
        rc = vjp_of(forward_fn, &c, nm, in, 2, cot, out, all);
    } else if (cot[0] || cot[1]) {
        pn_array *ins[8];
        for (int i = 0; i < nm; i++) ins[i] = in[i];
        ins[nm] = out[0], ins[nm + 1] = out[1], ins[nm + 2] = or_zeros(cot[0], out[0]);
        if (cot[1]) ins[nm + 3] = pn_astype(cot[1], pn_array_dtype(out[1]));
        rc = sdpa_make(&sdpa_vjp_prim, p, nm + 3 + (cot[1] != NULL), ins, all);
    }
    if (p->mask == PNK_SDPA_BOOL_MASK) all[3] = NULL;
    return finish_grads(rc, all, argnums, nargs, grads);
}

static int sdpa_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    (void)out;
    rule_ctx c = {*PNC_PARAMS(nd, pnK_sdpa_params), true};
    pn_scope_push();
    int rc = jvp_of(forward_fn, &c, n_qkvm(&c.p), in, tan, out_tan);
    if (rc) out_tan[0] = out_tan[1] = NULL;
    pn_scope_pop_keep(out_tan, 2);
    return rc;
}

/* The backward's inputs that the composite's backward takes, (q, k, v[, mask], dout[, dlse]),
 * gathered from a Vjp node's (q, k, v[, mask], out, lse, dout[, dlse]) into prim; *at gets
 * the node's index of each. Returns their number. */
static int backward_inputs(const pnC_node *nd, pn_array *const *in, pn_array **prim, int *at)
{
    int nm = n_qkvm(PNC_PARAMS(nd, pnK_sdpa_params)), n = 0;
    for (int i = 0; i < nd->nin; i++)
        if (i < nm || i >= nm + 2) at[n] = i, prim[n++] = in[i];
    return n;
}

/* Second derivatives: the vjp of the composite's backward over (q, k, v[, mask], dout[, dlse]);
 * out and lse are functions of q, k, v that it recomputes, so they get none. */
static int sdpa_vjp_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                        pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    rule_ctx c = {*PNC_PARAMS(nd, pnK_sdpa_params), has_dlse(nd)};
    pn_array *prim[6], *g[6] = {NULL}, *all[8] = {NULL};
    int at[6], np = backward_inputs(nd, in, prim, at);
    pn_scope_push();
    int rc = vjp_of(backward_fn, &c, np, prim, 3, cot, out, g);
    for (int i = 0; i < np; i++) all[at[i]] = g[i];
    if (c.p.mask == PNK_SDPA_BOOL_MASK) all[3] = NULL;
    return finish_grads(rc, all, argnums, nargs, grads);
}

static int sdpa_vjp_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                        pn_array *const *tan, pn_array **out_tan)
{
    (void)out;
    rule_ctx c = {*PNC_PARAMS(nd, pnK_sdpa_params), has_dlse(nd)};
    pn_array *prim[6], *t[6];
    int at[6], np = backward_inputs(nd, in, prim, at);
    for (int i = 0; i < np; i++) t[i] = c.p.mask == PNK_SDPA_BOOL_MASK && at[i] == 3 ? NULL : tan[at[i]];
    pn_scope_push();
    int rc = jvp_of(backward_fn, &c, np, prim, t, out_tan);
    if (rc) out_tan[0] = out_tan[1] = out_tan[2] = NULL;
    pn_scope_pop_keep(out_tan, 3);
    return rc;
}

/* Both primitives batch by folding the mapped axis into the batch axis every input and
 * output leads with: (V, B, ...) -> (V * B, ...) and back. */
static int sdpa_vmap(const pnC_node *nd, pn_array *const *in, const int *in_axes,
                     pn_array **out, int *out_axes)
{
    int64_t V = 1, B = pn_dim(in[0], in_axes[0] == 0 ? 1 : 0); /* q's batch */
    for (int i = 0; i < nd->nin; i++)
        if (in_axes[i] >= 0) V = pn_dim(in[i], in_axes[i]);
    pn_scope_push();
    pn_array *f[8];
    for (int i = 0; i < nd->nin; i++) {
        pn_array *x = in_axes[i] >= 0 ? pn_moveaxis(in[i], in_axes[i], 0) : pn_expand_dims(in[i], (int[]){0}, 1);
        int64_t sh[PNC_MAX_NDIM];
        int n = x ? pn_ndim(x) : 0;
        if (x) memcpy(sh, pn_shape(x), sizeof(int64_t) * (size_t)n);
        sh[0] = V;
        f[i] = x ? pn_flatten(pn_broadcast_to(x, sh, n), 0, 1) : NULL;
    }
    pn_array *o[3] = {NULL};
    int rc = sdpa_make(nd->prim, PNC_PARAMS(nd, pnK_sdpa_params), nd->nin, f, o);
    for (int j = 0; j < nd->nout; j++) {
        out[j] = rc ? NULL : pn_unflatten(o[j], 0, (int64_t[]){V, B}, 2);
        out_axes[j] = 0;
        if (!out[j]) rc = -1;
    }
    pn_scope_pop_keep(out, rc ? 0 : nd->nout);
    return rc;
}

const pnC_primitive sdpa_prim = {
    .name = "ScaledDotProductAttention",
    .eval = {[PN_CPU] = pnK_sdpa_eval, [PN_GPU] = PNG_EVAL(pnG_sdpa_eval)},
    .vjp = sdpa_vjp,
    .jvp = sdpa_jvp,
    .vmap = sdpa_vmap,
};

const pnC_primitive sdpa_vjp_prim = {
    .name = "ScaledDotProductAttentionVjp",
    .eval = {[PN_CPU] = pnK_sdpa_vjp_eval, [PN_GPU] = PNG_EVAL(pnG_sdpa_vjp_eval)},
    .vjp = sdpa_vjp_vjp,
    .jvp = sdpa_vjp_jvp,
    .vmap = sdpa_vmap,
};

/* ───────────────────────────── the constructor ───────────────────────────── */

static int fused_state = -1; /* -1: not read from the environment yet */

static bool fused_enabled(void)
{
    if (fused_state < 0) {
        const char *e = getenv("PONTE_SDPA_FUSED");
        fused_state = !(e && e[0] == '0');
    }
    return fused_state;
}

/* See attention.h. */
bool pnO_sdpa_set_fused(bool on)
{
    bool was = fused_enabled();
    fused_state = on;
    return was;
}

/* Attention with sinks from the attention without them: a sink is one more column of the
 * softmax holding the logit sinks[h] and the value 0, so each row's output is out scaled by
 * Z / (Z + exp(sink)) = sigmoid(lse - sink), lse the row's logsumexp without the sink. */
static pn_array *apply_sinks(pn_array *out, pn_array *lse, pn_array *sinks)
{
    pn_dtype lt = pn_array_dtype(lse);
    pn_array *s = pn_reshape(pn_astype(sinks, lt), (int64_t[]){1, pn_size(sinks), 1}, 3);
    pn_array *w = pn_sigmoid(pn_subtract(lse, s)); /* (B, Hq, Lq) */
    return pn_multiply(out, pn_astype(pn_expand_dims(w, (int[]){-1}, 1), pn_array_dtype(out)));
}

/* See attention.h. */
pn_array *pnO_sdpa(pn_array *q, pn_array *k, pn_array *v, pn_array *mask, bool causal,
                   double scale, pn_dtype t, pn_array *sinks)
{
    pn_scope_push();
    pn_array *ins[4] = {pn_astype(q, t), pn_astype(k, t), pn_astype(v, t), NULL};
    pnK_sdpa_params p = {.scale = scale, .fill = finfo_min(t), .causal = causal, .mask = PNK_SDPA_NO_MASK};
    if (mask) {
        int64_t ms[4] = {pn_dim(q, 0), pn_dim(q, 1), pn_dim(q, 2), pn_dim(k, 2)};
        bool b = pn_array_dtype(mask) == PN_BOOL;
        ins[3] = pn_broadcast_to(b ? mask : pn_astype(mask, t), ms, 4);
        p.mask = b ? PNK_SDPA_BOOL_MASK : PNK_SDPA_ADD_MASK;
    }
    pn_array *o[2] = {NULL};
    if (!fused_enabled())
        o[0] = composite(&p, ins[0], ins[1], ins[2], ins[3], sinks ? &o[1] : NULL);
    else if (sdpa_make(&sdpa_prim, &p, n_qkvm(&p), ins, o))
        return pnC_scope_return(NULL);
    /* the rows' lse is an output of the fused node: its vjp, asked for lse's cotangent, is the
     * composite's */
    return pnC_scope_return(sinks && o[0] ? apply_sinks(o[0], o[1], sinks) : o[0]);
}
