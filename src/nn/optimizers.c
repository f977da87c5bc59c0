/* optimizers.c — MLX's optimizer update rules (SGD, Adam, AdamW, RMSprop, Adagrad, AdaDelta,
 * Adamax, Lion, Adafactor, Muon), parameter groups, learning-rate schedules and global-norm
 * gradient clipping. One optimizer struct holds hyperparameters and state in a parameter tree
 * ("step", "<name>.m", ...); each rule is one function over lazy ops, so an update is part of
 * the graph like any op. The elementwise rules run as one fused OptimUpdate node (ops/optim.h)
 * when parameter, gradient and state share shape and dtype, and compose their arithmetic from
 * elementwise ops otherwise. A group gives the parameters under some names another rule. */
#include "core/core.h"
#include "ops/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ───────────────────────────── schedules ───────────────────────────── */

typedef enum { SCHED_CONST, SCHED_STEP, SCHED_EXP, SCHED_COSINE, SCHED_LINEAR, SCHED_JOIN } sched_kind;

struct pn_schedule {
    sched_kind kind;
    double init, end, rate;
    int64_t steps;
    pn_schedule *a, *b;
};

static pn_schedule *sched_new(sched_kind kind, double init, double end, double rate, int64_t steps)
{
    pn_schedule *s = calloc(1, sizeof *s);
    if (!s) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[schedule] Out of memory.");
    s->kind = kind;
    s->init = init;
    s->end = end;
    s->rate = rate;
    s->steps = steps;
    return s;
}

pn_schedule *pn_schedule_constant(double lr) { return sched_new(SCHED_CONST, lr, lr, 0, 0); }

pn_schedule *pn_schedule_step_decay(double init, double decay_rate, int64_t step_size)
{
    if (step_size <= 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[step_decay] step_size must be positive.");
    return sched_new(SCHED_STEP, init, 0, decay_rate, step_size);
}

pn_schedule *pn_schedule_exponential_decay(double init, double decay_rate)
{
    return sched_new(SCHED_EXP, init, 0, decay_rate, 0);
}

pn_schedule *pn_schedule_cosine_decay(double init, int64_t decay_steps, double end)
{
    if (decay_steps <= 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[cosine_decay] decay_steps must be positive.");
    return sched_new(SCHED_COSINE, init, end, 0, decay_steps);
}

pn_schedule *pn_schedule_linear(double init, double end, int64_t steps)
{
    if (steps < 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linear_schedule] steps must be at least 1.");
    return sched_new(SCHED_LINEAR, init, end, 0, steps);
}

pn_schedule *pn_schedule_join(pn_schedule *a, pn_schedule *b, int64_t boundary)
{
    if (!a || !b) {
        pn_schedule_free(a);
        pn_schedule_free(b);
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[join_schedules] NULL schedule.");
    }
    pn_schedule *s = sched_new(SCHED_JOIN, 0, 0, 0, boundary);
    if (!s) {
        pn_schedule_free(a);
        pn_schedule_free(b);
        return NULL;
    }
    s->a = a;
    s->b = b;
    return s;
}

/* The formulas of mlx.optimizers' schedules. */
double pn_schedule_at(const pn_schedule *s, int64_t step)
{
    if (!s) return NAN;
    switch (s->kind) {
    case SCHED_CONST: return s->init;
    case SCHED_STEP: return s->init * pow(s->rate, (double)(step / s->steps));
    case SCHED_EXP: return s->init * pow(s->rate, (double)step);
    case SCHED_COSINE: {
        double t = step < s->steps ? (double)step : (double)s->steps;
        double decay = 0.5 * (1.0 + cos(M_PI * t / (double)s->steps));
        return s->end + decay * (s->init - s->end);
    }
    case SCHED_LINEAR: {
        double t = step < s->steps ? (double)step : (double)s->steps;
        return t * ((s->end - s->init) / (double)s->steps) + s->init;
    }
    case SCHED_JOIN:
        return step < s->steps ? pn_schedule_at(s->a, step) : pn_schedule_at(s->b, step - s->steps);
    }
    return NAN;
}

void pn_schedule_free(pn_schedule *s)
{
    if (!s) return;
    pn_schedule_free(s->a);
    pn_schedule_free(s->b);
    free(s);
}

/* ───────────────────────────── optimizers ───────────────────────────── */

typedef struct pn_optimizer pn_optimizer;

/* One rule: new parameter from (param, grad, state slots), updating the slots in place.
 * lr is the step's learning rate, step the count including this update (1 at the first). */
typedef pn_array *(*rule_fn)(const pn_optimizer *o, pn_array *param, pn_array *grad,
                             pn_array **slots, double lr, int64_t step);

enum { MAX_SLOTS = 4 };

typedef struct rule {
    const char *name;
    rule_fn fn;
    int nslots;
    const char *slots[MAX_SLOTS];
    /* false: a slot the state lacks starts as zeros shaped like the parameter. true: it
     * arrives NULL; the rule creates the slots it uses and leaves the others NULL (Adafactor,
     * whose slots depend on the parameter's rank and have their own shapes). */
    bool own_slots;
} rule;

/* A parameter group: names matching one of prefixes follow rule's hyperparameters. */
typedef struct group {
    char **prefixes;
    int n;
    pn_optimizer *rule;
} group;

struct pn_optimizer {
    const rule *rule;
    double lr, b1, b2, eps, wd, dampening, momentum;
    double eps2, clip, decay; /* Adafactor: eps[1], clip_threshold, decay_rate; b1 NAN = None */
    int ns_steps;             /* Muon */
    bool nesterov, bias_correction;
    bool scale_parameter, relative_step, warmup_init;
    pn_schedule *schedule; /* NULL: constant lr */
    pn_params *state;      /* "step" and "<param>.<slot>" (groups' slots too) */
    int64_t step;          /* updates done */
    group *groups;
    int ngroups;
};

#define W(x) pn_weak_float(x)

/* An update with array hyper-parameters (pn_optimizer_update_arrays; mx.compile traces them,
 * as MLX keeps step and learning rate in its state): the learning rate (0-d) and the step
 * count including this update, as a float array. NULL otherwise. The rules compose their
 * step from ops then (no fused kernel, whose params hold numbers). */
static _Thread_local pn_array *lr_arr, *t_arr;
/* The learning rate of a rule: the array when one is set, else the number lr. */
#define LR(lr) (lr_arr ? lr_arr : W(lr))
/* 1 - lr * wd (decoupled weight decay), as an array or a number. */
#define DECAY(lr, wd) (lr_arr ? pn_subtract(W(1.0), pn_multiply(lr_arr, W(wd))) : W(1 - (lr) * (wd)))

/* The rule's fused step (one OptimUpdate node over p, g and the slots s) when they allow it:
 * returns 0 with the new parameter in *np and the new slots in s, 1 when the rule must compose
 * its step from elementwise ops instead, -1 on error. */
static int fused_step(pn_array *p, pn_array *g, pn_array **s, const pnN_optim_params *prm, pn_array **np)
{
    pn_array *out[1 + PNN_OPT_MAX_SLOTS];
    if (lr_arr) return 1;
    int rc = pnN_optim_update(p, g, s, prm, out);
    if (rc) return rc;
    *np = out[0];
    for (int k = 0; k < pnN_optim_nslots(prm->rule); k++) s[k] = out[1 + k];
    return 0;
}

/* Inside a rule (p, g, s in scope): returns the fused step of RULE with FLAGS and the
 * coefficients that follow (laid out as in ops/optim.h) unless it must be composed. */
#define RETURN_FUSED(RULE, FLAGS, ...)                                                             do {                                                                                               pn_array *np_ = NULL;                                                                          int rc_ = fused_step(p, g, s, &(pnN_optim_params){RULE, FLAGS, {__VA_ARGS__}}, &np_);          if (rc_ <= 0) return rc_ ? NULL : np_;                                                     } while (0)

static pn_array *sgd_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                          double lr, int64_t step)
{
    int flags = (o->wd != 0 ? PNN_OPT_WD : 0) | (o->dampening > 0 ? PNN_OPT_DAMP : 0) |
                (o->nesterov ? PNN_OPT_NESTEROV : 0);
    if (o->momentum <= 0) RETURN_FUSED(PNN_OPT_SGD, flags & PNN_OPT_WD, o->wd, lr);
    else RETURN_FUSED(PNN_OPT_MOMENTUM, flags, o->wd, lr, o->momentum, 1 - o->dampening);
    if (o->wd != 0) g = pn_add(g, pn_multiply(W(o->wd), p));
    if (o->momentum <= 0) return pn_subtract(p, pn_multiply(LR(lr), g));
    pn_array *v = pn_multiply(W(o->momentum), s[0]);
    v = pn_add(v, o->dampening > 0 ? pn_multiply(W(1 - o->dampening), g) : g);
    pn_array *update = o->nesterov ? pn_add(g, pn_multiply(W(o->momentum), v)) : v;
    s[0] = v;
    return pn_subtract(p, pn_multiply(LR(lr), update));
}

/* Adam's step from p*(1 - lr*wd) (wd: AdamW's, 0 for Adam), fused or composed (the
 * bias-corrected coefficients c1, c2 are computed here, on the host, or from the step array). */
static pn_array *adam_step(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                           double lr, int64_t step, double wd)
{
    double c1 = lr, c2 = 1, decay = 1 - lr * wd;
    if (o->bias_correction) {
        c1 = lr / (1 - pow(o->b1, (double)step));
        c2 = 1 / sqrt(1 - pow(o->b2, (double)step));
    }
    RETURN_FUSED(PNN_OPT_ADAM, 0, o->b1, 1 - o->b1, o->b2, 1 - o->b2, o->eps, decay, c1, c2);
    if (wd != 0) p = pn_multiply(p, DECAY(lr, wd));
    pn_array *m = pn_add(pn_multiply(W(o->b1), s[0]), pn_multiply(W(1 - o->b1), g));
    pn_array *v = pn_add(pn_multiply(W(o->b2), s[1]), pn_multiply(W(1 - o->b2), pn_square(g)));
    s[0] = m;
    s[1] = v;
    if (o->bias_correction) {
        pn_array *a1 = W(c1), *a2 = W(c2);
        if (lr_arr) { /* lr / (1 - b1^t), 1 / sqrt(1 - b2^t) */
            a1 = pn_divide(lr_arr, pn_subtract(W(1.0), pn_power(W(o->b1), t_arr)));
            a2 = pn_rsqrt(pn_subtract(W(1.0), pn_power(W(o->b2), t_arr)));
        }
        pn_array *den = pn_add(pn_multiply(pn_sqrt(v), a2), W(o->eps));
        return pn_subtract(p, pn_divide(pn_multiply(a1, m), den));
    }
    return pn_subtract(p, pn_divide(pn_multiply(LR(lr), m), pn_add(pn_sqrt(v), W(o->eps))));
}

static pn_array *adam_core(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                           double lr, int64_t step)
{
    return adam_step(o, p, g, s, lr, step, 0);
}

static pn_array *adamw_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                            double lr, int64_t step)
{
    return adam_step(o, p, g, s, lr, step, o->wd);
}

static pn_array *rmsprop_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                              double lr, int64_t step)
{
    RETURN_FUSED(PNN_OPT_RMSPROP, 0, o->b1, 1 - o->b1, lr, o->eps);
    pn_array *v = pn_add(pn_multiply(W(o->b1), s[0]), pn_multiply(W(1 - o->b1), pn_square(g)));
    s[0] = v;
    return pn_subtract(p, pn_divide(pn_multiply(LR(lr), g), pn_add(pn_sqrt(v), W(o->eps))));
}

static pn_array *adagrad_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                              double lr, int64_t step)
{
    RETURN_FUSED(PNN_OPT_ADAGRAD, 0, lr, o->eps);
    pn_array *v = pn_add(s[0], pn_square(g));
    s[0] = v;
    return pn_subtract(p, pn_divide(pn_multiply(LR(lr), g), pn_add(pn_sqrt(v), W(o->eps))));
}

static pn_array *adadelta_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                               double lr, int64_t step)
{
    RETURN_FUSED(PNN_OPT_ADADELTA, 0, o->b1, 1 - o->b1, o->eps, lr);
    pn_array *v = pn_add(pn_multiply(W(o->b1), s[0]), pn_multiply(W(1 - o->b1), pn_square(g)));
    pn_array *d = pn_multiply(pn_divide(pn_sqrt(pn_add(s[1], W(o->eps))), pn_sqrt(pn_add(v, W(o->eps)))), g);
    pn_array *u = pn_add(pn_multiply(W(o->b1), s[1]), pn_multiply(W(1 - o->b1), pn_square(d)));
    s[0] = v;
    s[1] = u;
    return pn_subtract(p, pn_multiply(LR(lr), d));
}

static pn_array *adamax_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                             double lr, int64_t step)
{
    RETURN_FUSED(PNN_OPT_ADAMAX, 0, o->b1, 1 - o->b1, o->b2, lr, o->eps);
    pn_array *m = pn_add(pn_multiply(W(o->b1), s[0]), pn_multiply(W(1 - o->b1), g));
    pn_array *v = pn_maximum(pn_multiply(W(o->b2), s[1]), pn_abs(g));
    s[0] = m;
    s[1] = v;
    return pn_subtract(p, pn_divide(pn_multiply(LR(lr), m), pn_add(v, W(o->eps))));
}

static pn_array *lion_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                           double lr, int64_t step)
{
    RETURN_FUSED(PNN_OPT_LION, o->wd > 0 ? PNN_OPT_WD : 0, o->b1, 1 - o->b1, o->b2, 1 - o->b2, 1 - lr * o->wd, lr);
    pn_array *c = pn_add(pn_multiply(W(o->b1), s[0]), pn_multiply(W(1 - o->b1), g));
    s[0] = pn_add(pn_multiply(W(o->b2), s[0]), pn_multiply(W(1 - o->b2), g));
    if (o->wd > 0) p = pn_multiply(DECAY(lr, o->wd), p);
    return pn_subtract(p, pn_multiply(LR(lr), pn_sign(c)));
}

/* sqrt(mean(x^2)) over every element, a scalar. */
static pn_array *rms(pn_array *x) { return pn_sqrt(pn_mean(pn_square(x), NULL, 0, false)); }

/* Adafactor (Shazeer & Stern, 2018) as mlx.optimizers.Adafactor: slots exp_avg_sq_row
 * (shape[:-1]) and exp_avg_sq_col (shape[:-2] + shape[-1:]) for ndim >= 2, else exp_avg_sq;
 * exp_avg when beta_1 is set. */
static pn_array *adafactor_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                                double lr, int64_t step)
{
    if (lr_arr)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[Adafactor] The step size depends on the step "
                        "count on the host: not available with array hyper-parameters (a traced "
                        "or scheduled update).");
    double t = (double)step;
    pn_dtype dt = pn_array_dtype(p);
    int nd = pn_ndim(g);
    const int64_t *shape = pn_shape(g);
    double rel = o->relative_step ? fmin(o->warmup_init ? 1e-6 * t : 1e-2, 1 / sqrt(t)) : lr;
    /* the step size alpha: rel, times max(eps2, RMS(p)) with scale_parameter (NULL: rel alone) */
    pn_array *alpha = o->scale_parameter ? pn_multiply(pn_maximum(rms(p), W(o->eps2)), W(rel)) : NULL;
    double b2 = 1 - pow(t, o->decay);
    pn_array *u = pn_add(pn_square(g), W(o->eps));
    if (nd >= 2) {
        int64_t cshape[PNC_MAX_NDIM];
        memcpy(cshape, shape, (size_t)(nd - 2) * sizeof *shape);
        cshape[nd - 2] = shape[nd - 1];
        pn_array *row = s[0] ? s[0] : pn_zeros(shape, nd - 1, dt);
        pn_array *col = s[1] ? s[1] : pn_zeros(cshape, nd - 1, dt);
        row = pn_add(pn_multiply(W(b2), row), pn_multiply(W(1 - b2), pn_mean(u, (int[]){-1}, 1, false)));
        col = pn_add(pn_multiply(W(b2), col), pn_multiply(W(1 - b2), pn_mean(u, (int[]){-2}, 1, false)));
        s[0] = row;
        s[1] = col;
        /* the factored estimate row_i * col_j / mean(row), as an outer product per matrix */
        pn_array *r = pn_rsqrt(pn_divide(row, pn_mean(row, (int[]){-1}, 1, true)));
        pn_array *c = pn_rsqrt(col);
        u = pn_multiply(pn_multiply(pn_expand_dims(r, (int[]){-1}, 1), pn_expand_dims(c, (int[]){-2}, 1)), g);
    } else {
        pn_array *v = s[2] ? s[2] : pn_zeros_like(p);
        v = pn_add(pn_multiply(W(b2), v), pn_multiply(W(1 - b2), u));
        s[2] = v;
        u = pn_multiply(pn_rsqrt(v), g);
    }
    u = pn_divide(u, pn_maximum(pn_divide(rms(u), W(o->clip)), W(1.0)));
    u = alpha ? pn_multiply(alpha, u) : pn_multiply(W(rel), u);
    if (!isnan(o->b1)) {
        pn_array *m = s[3] ? s[3] : pn_zeros_like(p);
        u = pn_add(pn_multiply(W(o->b1), m), pn_multiply(W(1 - o->b1), u));
        s[3] = u;
    }
    if (o->wd != 0)
        p = pn_subtract(p, alpha ? pn_multiply(p, pn_multiply(alpha, W(o->wd))) : pn_multiply(p, W(rel * o->wd)));
    return pn_subtract(p, u);
}

/* Newton-Schulz iteration towards the orthogonal factor of a matrix x (m, n): x / |x|_F, then
 * steps times X <- a X + (b A + c A^2) X with A = X X^T, on the wide orientation. */
static pn_array *newton_schulz(pn_array *x, int steps)
{
    static const double a = 3.4445, b = -4.7750, c = 2.0315;
    bool tall = pn_dim(x, 0) > pn_dim(x, 1);
    if (tall) x = pn_transpose(x, NULL, 0);
    x = pn_divide(x, pn_add(pn_sqrt(pn_sum(pn_square(x), NULL, 0, false)), W(1e-7)));
    for (int i = 0; i < steps; i++) {
        pn_array *A = pn_matmul(x, pn_transpose(x, NULL, 0));
        pn_array *B = pn_addmm(pn_multiply(W(b), A), A, A, c, 1.0);
        x = pn_addmm(pn_multiply(W(a), x), B, x, 1.0, 1.0);
    }
    return tall ? pn_transpose(x, NULL, 0) : x;
}

/* Muon as mlx.optimizers.Muon: momentum SGD (weight decay added to the gradient) whose update
 * is orthogonalised for ndim >= 2 (flattened to (shape[0], -1) beyond 2-d) and scaled by
 * sqrt(max(1, shape[-2] / shape[-1])); parameters with ndim < 2 take the momentum update. */
static pn_array *muon_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                           double lr, int64_t step)
{
    if (o->wd != 0) g = pn_add(g, pn_multiply(W(o->wd), p));
    pn_array *v = pn_add(pn_multiply(W(o->momentum), s[0]), pn_multiply(W(1 - o->momentum), g));
    s[0] = v;
    pn_array *u = o->nesterov ? pn_add(pn_multiply(g, W(1 - o->momentum)), pn_multiply(v, W(o->momentum))) : v;
    int nd = pn_ndim(u);
    if (nd >= 2 && pn_size(u) > 0) {
        const int64_t *shape = pn_shape(p);
        pn_array *m = nd > 2 ? pn_reshape(u, (int64_t[]){shape[0], pn_size(u) / shape[0]}, 2) : u;
        m = newton_schulz(m, o->ns_steps);
        u = nd > 2 ? pn_reshape(m, shape, nd) : m;
        double scale = sqrt(fmax(1.0, (double)shape[nd - 2] / (double)shape[nd - 1]));
        return pn_subtract(p, pn_multiply(lr_arr ? pn_multiply(lr_arr, W(scale)) : W(lr * scale), u));
    }
    return pn_subtract(p, pn_multiply(LR(lr), u));
}

static const rule RULES[] = {
    {"sgd", sgd_rule, 1, {"v"}},
    {"adam", adam_core, 2, {"m", "v"}},
    {"adamw", adamw_rule, 2, {"m", "v"}},
    {"rmsprop", rmsprop_rule, 1, {"v"}},
    {"adagrad", adagrad_rule, 1, {"v"}},
    {"adadelta", adadelta_rule, 2, {"v", "u"}},
    {"adamax", adamax_rule, 2, {"m", "v"}},
    {"lion", lion_rule, 1, {"m"}},
    {"adafactor", adafactor_rule, 4, {"exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq", "exp_avg"}, true},
    {"muon", muon_rule, 1, {"v"}},
};
enum { SGD, ADAM, ADAMW, RMSPROP, ADAGRAD, ADADELTA, ADAMAX, LION, ADAFACTOR, MUON };

static pn_optimizer *optim_new(int which, double lr)
{
    pn_optimizer *o = calloc(1, sizeof *o);
    if (!o) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[optimizer] Out of memory.");
    o->state = pn_params_new();
    if (!o->state) {
        free(o);
        return NULL;
    }
    o->rule = &RULES[which];
    o->lr = lr;
    return o;
}

pn_optimizer *pn_optim_sgd(double lr, double momentum, double weight_decay, double dampening,
                           bool nesterov)
{
    if (nesterov && (momentum <= 0 || dampening != 0))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[SGD] Nesterov momentum requires a momentum and zero dampening.");
    pn_optimizer *o = optim_new(SGD, lr);
    if (!o) return NULL;
    o->momentum = momentum;
    o->wd = weight_decay;
    o->dampening = dampening;
    o->nesterov = nesterov;
    return o;
}

static pn_optimizer *adam_like(int which, double lr, double b1, double b2, double eps,
                               double wd, bool bias_correction)
{
    pn_optimizer *o = optim_new(which, lr);
    if (!o) return NULL;
    o->b1 = b1;
    o->b2 = b2;
    o->eps = eps;
    o->wd = wd;
    o->bias_correction = bias_correction;
    return o;
}

pn_optimizer *pn_optim_adam(double lr, double b1, double b2, double eps, bool bias_correction)
{
    return adam_like(ADAM, lr, b1, b2, eps, 0, bias_correction);
}
pn_optimizer *pn_optim_adamw(double lr, double b1, double b2, double eps, double wd,
                             bool bias_correction)
{
    return adam_like(ADAMW, lr, b1, b2, eps, wd, bias_correction);
}
pn_optimizer *pn_optim_rmsprop(double lr, double alpha, double eps)
{
    return adam_like(RMSPROP, lr, alpha, 0, eps, 0, false);
}
pn_optimizer *pn_optim_adagrad(double lr, double eps) { return adam_like(ADAGRAD, lr, 0, 0, eps, 0, false); }
pn_optimizer *pn_optim_adadelta(double lr, double rho, double eps)
{
    return adam_like(ADADELTA, lr, rho, 0, eps, 0, false);
}
pn_optimizer *pn_optim_adamax(double lr, double b1, double b2, double eps)
{
    return adam_like(ADAMAX, lr, b1, b2, eps, 0, false);
}
pn_optimizer *pn_optim_lion(double lr, double b1, double b2, double wd)
{
    return adam_like(LION, lr, b1, b2, 0, wd, false);
}

pn_optimizer *pn_optim_adafactor(double lr, double eps1, double eps2, double clip_threshold,
                                 double decay_rate, double beta_1, double weight_decay,
                                 bool scale_parameter, bool relative_step, bool warmup_init)
{
    if (!relative_step && isnan(lr))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[Adafactor] A learning_rate is required when relative_step is False.");
    if (!(clip_threshold > 0))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[Adafactor] clip_threshold must be positive, got %g.", clip_threshold);
    pn_optimizer *o = adam_like(ADAFACTOR, lr, beta_1, 0, eps1, weight_decay, false);
    if (!o) return NULL;
    o->eps2 = eps2;
    o->clip = clip_threshold;
    o->decay = decay_rate;
    o->scale_parameter = scale_parameter;
    o->relative_step = relative_step;
    o->warmup_init = warmup_init;
    return o;
}

pn_optimizer *pn_optim_muon(double lr, double momentum, double weight_decay, bool nesterov,
                            int ns_steps)
{
    if (ns_steps < 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[Muon] ns_steps must be non-negative, got %d.", ns_steps);
    pn_optimizer *o = optim_new(MUON, lr);
    if (!o) return NULL;
    o->momentum = momentum;
    o->wd = weight_decay;
    o->nesterov = nesterov;
    o->ns_steps = ns_steps;
    return o;
}

static void group_clear(group *g)
{
    for (int k = 0; k < g->n; k++) free(g->prefixes[k]);
    free(g->prefixes);
    pn_optimizer_free(g->rule);
}

int pn_optimizer_add_group(pn_optimizer *o, const char *const *prefixes, int n, pn_optimizer *rule)
{
    const char *bad = !o || !rule ? "NULL optimizer"
                      : rule == o ? "an optimizer cannot be its own group"
                      : rule->ngroups > 0 ? "a group's optimizer cannot have groups of its own"
                      : n < 0 || (n > 0 && !prefixes) ? "invalid list of prefixes"
                      : NULL;
    for (int k = 0; !bad && k < n; k++)
        if (!prefixes[k]) bad = "NULL prefix";
    if (bad) {
        if (rule != o) pn_optimizer_free(rule);
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[optimizer_add_group] %s.", bad);
    }
    group g = {calloc(n > 0 ? (size_t)n : 1, sizeof(char *)), 0, rule};
    group *gs = g.prefixes ? realloc(o->groups, (size_t)(o->ngroups + 1) * sizeof *gs) : NULL;
    for (; gs && g.n < n; g.n++)
        if (!(g.prefixes[g.n] = strdup(prefixes[g.n]))) break;
    if (!gs || g.n < n) {
        if (gs) o->groups = gs;
        group_clear(&g);
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[optimizer_add_group] Out of memory.");
    }
    o->groups = gs;
    rule->step = o->step;
    o->groups[o->ngroups] = g;
    return o->ngroups++;
}

pn_optimizer *pn_optimizer_group(pn_optimizer *o, int i)
{
    return o && i >= 0 && i < o->ngroups ? o->groups[i].rule : NULL;
}

/* name is prefix, lies under it (prefix + "." + ...), or prefix is "" (the whole tree). */
static bool name_under(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    return n == 0 || (strncmp(name, prefix, n) == 0 && (name[n] == 0 || name[n] == '.'));
}

/* The optimizer whose rule updates parameter name: its first matching group, else o. */
static pn_optimizer *rule_for(pn_optimizer *o, const char *name)
{
    for (int i = 0; i < o->ngroups; i++)
        for (int k = 0; k < o->groups[i].n; k++)
            if (name_under(name, o->groups[i].prefixes[k])) return o->groups[i].rule;
    return o;
}

void pn_optimizer_set_schedule(pn_optimizer *o, pn_schedule *s)
{
    if (!o) {
        pn_schedule_free(s);
        return;
    }
    pn_schedule_free(o->schedule);
    o->schedule = s;
}

double pn_optimizer_learning_rate(const pn_optimizer *o)
{
    if (!o) return NAN;
    return o->schedule ? pn_schedule_at(o->schedule, o->step) : o->lr;
}

pn_params *pn_optimizer_state(pn_optimizer *o) { return o ? o->state : NULL; }

void pn_optimizer_free(pn_optimizer *o)
{
    if (!o) return;
    pn_params_free(o->state);
    pn_schedule_free(o->schedule);
    for (int i = 0; i < o->ngroups; i++) group_clear(&o->groups[i]);
    free(o->groups);
    free(o);
}

/* The step counter lives in the state as an int64 scalar so that saving the state and
 * loading it into a new optimizer resumes exactly. */
static int64_t state_step(pn_optimizer *o)
{
    pn_array *s = pn_params_get(o->state, "step");
    return s ? pn_item_int(s) : o->step;
}

/* One step over the parameters that have gradients; step is the count including it (the
 * host number; lr_arr/t_arr hold the arrays in array mode). 0 or -1. */
static int update_params(pn_optimizer *o, pn_params *params, const pn_params *grads, int64_t step)
{
    int rc = 0;
    char key[512];
    for (int i = 0; i < pn_params_count(params) && rc == 0; i++) {
        const char *name = pn_params_name(params, i);
        pn_array *g = pn_params_get(grads, name);
        if (!g) continue;
        pn_array *p = pn_params_at(params, i);
        if (pn_ndim(g) != pn_ndim(p) || pn_size(g) != pn_size(p)) {
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[optimizer] Gradient of %s has a different shape from the parameter.", name);
            break;
        }
        pn_optimizer *r = rule_for(o, name);
        const rule *ru = r->rule;
        pn_scope_push();
        pn_array *slots[MAX_SLOTS] = {NULL};
        for (int k = 0; k < ru->nslots; k++) {
            snprintf(key, sizeof key, "%s.%s", name, ru->slots[k]);
            slots[k] = pn_params_get(o->state, key);
            if (!slots[k] && !ru->own_slots) slots[k] = pn_zeros_like(p);
        }
        pn_array *np = ru->fn(r, p, g, slots, pn_optimizer_learning_rate(r), step);
        if (np && pn_array_dtype(np) != pn_array_dtype(p)) np = pn_astype(np, pn_array_dtype(p));
        if (!np) rc = -1;
        for (int k = 0; k < ru->nslots && rc == 0; k++) {
            if (!slots[k]) { /* a slot this parameter does not use, or a failed op */
                if (!ru->own_slots) rc = -1;
                continue;
            }
            snprintf(key, sizeof key, "%s.%s", name, ru->slots[k]);
            if (pn_params_set(o->state, key, slots[k])) rc = -1;
        }
        if (rc == 0) rc = pn_params_set(params, name, np);
        pn_scope_pop();
    }
    return rc ? -1 : 0;
}

int pn_optimizer_update(pn_optimizer *o, pn_params *params, const pn_params *grads)
{
    if (!o || !params || !grads)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[optimizer] NULL optimizer or tree.");
    o->step = state_step(o);
    for (int i = 0; i < o->ngroups; i++) o->groups[i].rule->step = o->step;
    int64_t step = o->step + 1;
    if (update_params(o, params, grads, step)) return -1;
    o->step = step;
    for (int i = 0; i < o->ngroups; i++) o->groups[i].rule->step = step;
    pn_array *s = pn_scalar_int(step, PN_INT64);
    if (!s) return -1;
    int rc = pn_params_set(o->state, "step", s);
    pn_release(s);
    return rc;
}

int pn_optimizer_update_arrays(pn_optimizer *o, pn_params *params, const pn_params *grads,
                               pn_array *lr)
{
    if (!o || !params || !grads || !lr)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[optimizer] NULL optimizer, tree or learning rate.");
    if (pn_size(lr) != 1 || !pnC_is_inexact(pn_array_dtype(lr)))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[optimizer] The learning rate must be a "
                            "floating-point array of one element.");
    pn_scope_push();
    pn_array *s = pn_params_get(o->state, "step");
    pn_array *count = s ? pn_add(s, pn_scalar_int(1, pn_array_dtype(s))) : pn_scalar_int(1, PN_INT64);
    lr_arr = pn_reshape(lr, NULL, 0);
    t_arr = pn_astype(count, PN_FLOAT32);
    int rc = lr_arr && t_arr ? update_params(o, params, grads, o->step + 1) : -1;
    lr_arr = t_arr = NULL;
    if (rc == 0) rc = pn_params_set(o->state, "step", count);
    pn_scope_pop();
    return rc;
}

pn_array *pn_clip_grad_norm(pn_params *grads, double max_norm)
{
    if (!grads) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[clip_grad_norm] NULL tree.");
    pn_scope_push();
    pn_array *total = pn_scalar(0, PN_FLOAT32);
    for (int i = 0; i < pn_params_count(grads); i++) {
        pn_array *g = pn_params_at(grads, i);
        total = pn_add(total, pn_sum(pn_square(pn_astype(g, PN_FLOAT32)), NULL, 0, false));
    }
    pn_array *norm = pn_sqrt(total);
    /* scale = min(1, max_norm / (norm + 1e-6)), as mlx.optimizers.clip_grad_norm */
    pn_array *scale = pn_minimum(pn_divide(W(max_norm), pn_add(norm, W(1e-6))), W(1.0));
    for (int i = 0; i < pn_params_count(grads) && norm; i++) {
        pn_array *g = pn_params_at(grads, i);
        pn_array *c = pn_astype(pn_multiply(g, scale), pn_array_dtype(g));
        if (!c || pn_params_set(grads, pn_params_name(grads, i), c)) norm = NULL;
    }
    return pnC_scope_return(norm);
}
