/* optimizers.c — MLX's optimizer update rules (SGD, Adam, AdamW, RMSprop, Adagrad, AdaDelta,
 * Adamax, Lion), learning-rate schedules and global-norm gradient clipping. One optimizer
 * struct holds hyperparameters and state in a parameter tree ("step", "<name>.m", ...);
 * each rule is one function over lazy ops, so an update is part of the graph like any op. */
#include "core/core.h"

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

typedef struct rule {
    const char *name;
    rule_fn fn;
    int nslots;
    const char *slots[2];
} rule;

struct pn_optimizer {
    const rule *rule;
    double lr, b1, b2, eps, wd, dampening, momentum;
    bool nesterov, bias_correction;
    pn_schedule *schedule; /* NULL: constant lr */
    pn_params *state;      /* "step" and "<param>.<slot>" */
    int64_t step;          /* updates done */
};

#define W(x) pn_weak_float(x)

static pn_array *sgd_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                          double lr, int64_t step)
{
    if (o->wd != 0) g = pn_add(g, pn_multiply(W(o->wd), p));
    if (o->momentum <= 0) return pn_subtract(p, pn_multiply(W(lr), g));
    pn_array *v = pn_multiply(W(o->momentum), s[0]);
    v = pn_add(v, o->dampening > 0 ? pn_multiply(W(1 - o->dampening), g) : g);
    pn_array *update = o->nesterov ? pn_add(g, pn_multiply(W(o->momentum), v)) : v;
    s[0] = v;
    return pn_subtract(p, pn_multiply(W(lr), update));
}

static pn_array *adam_core(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                           double lr, int64_t step)
{
    pn_array *m = pn_add(pn_multiply(W(o->b1), s[0]), pn_multiply(W(1 - o->b1), g));
    pn_array *v = pn_add(pn_multiply(W(o->b2), s[1]), pn_multiply(W(1 - o->b2), pn_square(g)));
    s[0] = m;
    s[1] = v;
    if (o->bias_correction) {
        double c1 = lr / (1 - pow(o->b1, (double)step));
        double c2 = 1 / sqrt(1 - pow(o->b2, (double)step));
        pn_array *den = pn_add(pn_multiply(pn_sqrt(v), W(c2)), W(o->eps));
        return pn_subtract(p, pn_divide(pn_multiply(W(c1), m), den));
    }
    return pn_subtract(p, pn_divide(pn_multiply(W(lr), m), pn_add(pn_sqrt(v), W(o->eps))));
}

static pn_array *adamw_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                            double lr, int64_t step)
{
    p = pn_multiply(p, W(1 - lr * o->wd));
    return adam_core(o, p, g, s, lr, step);
}

static pn_array *rmsprop_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                              double lr, int64_t step)
{
    pn_array *v = pn_add(pn_multiply(W(o->b1), s[0]), pn_multiply(W(1 - o->b1), pn_square(g)));
    s[0] = v;
    return pn_subtract(p, pn_divide(pn_multiply(W(lr), g), pn_add(pn_sqrt(v), W(o->eps))));
}

static pn_array *adagrad_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                              double lr, int64_t step)
{
    pn_array *v = pn_add(s[0], pn_square(g));
    s[0] = v;
    return pn_subtract(p, pn_divide(pn_multiply(W(lr), g), pn_add(pn_sqrt(v), W(o->eps))));
}

static pn_array *adadelta_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                               double lr, int64_t step)
{
    pn_array *v = pn_add(pn_multiply(W(o->b1), s[0]), pn_multiply(W(1 - o->b1), pn_square(g)));
    pn_array *d = pn_multiply(pn_divide(pn_sqrt(pn_add(s[1], W(o->eps))), pn_sqrt(pn_add(v, W(o->eps)))), g);
    pn_array *u = pn_add(pn_multiply(W(o->b1), s[1]), pn_multiply(W(1 - o->b1), pn_square(d)));
    s[0] = v;
    s[1] = u;
    return pn_subtract(p, pn_multiply(W(lr), d));
}

static pn_array *adamax_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                             double lr, int64_t step)
{
    pn_array *m = pn_add(pn_multiply(W(o->b1), s[0]), pn_multiply(W(1 - o->b1), g));
    pn_array *v = pn_maximum(pn_multiply(W(o->b2), s[1]), pn_abs(g));
    s[0] = m;
    s[1] = v;
    return pn_subtract(p, pn_divide(pn_multiply(W(lr), m), pn_add(v, W(o->eps))));
}

static pn_array *lion_rule(const pn_optimizer *o, pn_array *p, pn_array *g, pn_array **s,
                           double lr, int64_t step)
{
    pn_array *c = pn_add(pn_multiply(W(o->b1), s[0]), pn_multiply(W(1 - o->b1), g));
    s[0] = pn_add(pn_multiply(W(o->b2), s[0]), pn_multiply(W(1 - o->b2), g));
    if (o->wd > 0) p = pn_multiply(W(1 - lr * o->wd), p);
    return pn_subtract(p, pn_multiply(W(lr), pn_sign(c)));
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
};
enum { SGD, ADAM, ADAMW, RMSPROP, ADAGRAD, ADADELTA, ADAMAX, LION };

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
    free(o);
}

/* The step counter lives in the state as an int64 scalar so that saving the state and
 * loading it into a new optimizer resumes exactly. */
static int64_t state_step(pn_optimizer *o)
{
    pn_array *s = pn_params_get(o->state, "step");
    return s ? pn_item_int(s) : o->step;
}

int pn_optimizer_update(pn_optimizer *o, pn_params *params, const pn_params *grads)
{
    if (!o || !params || !grads)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[optimizer] NULL optimizer or tree.");
    o->step = state_step(o);
    double lr = pn_optimizer_learning_rate(o);
    int64_t step = o->step + 1;
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
        pn_scope_push();
        pn_array *slots[2] = {NULL, NULL};
        for (int k = 0; k < o->rule->nslots; k++) {
            snprintf(key, sizeof key, "%s.%s", name, o->rule->slots[k]);
            slots[k] = pn_params_get(o->state, key);
            if (!slots[k]) slots[k] = pn_zeros_like(p);
        }
        pn_array *np = o->rule->fn(o, p, g, slots, lr, step);
        if (np && pn_array_dtype(np) != pn_array_dtype(p)) np = pn_astype(np, pn_array_dtype(p));
        if (!np) rc = -1;
        for (int k = 0; k < o->rule->nslots && rc == 0; k++) {
            snprintf(key, sizeof key, "%s.%s", name, o->rule->slots[k]);
            if (!slots[k] || pn_params_set(o->state, key, slots[k])) rc = -1;
        }
        if (rc == 0) rc = pn_params_set(params, name, np);
        pn_scope_pop();
    }
    if (rc) return -1;
    o->step = step;
    pn_array *s = pn_scalar_int(step, PN_INT64);
    if (!s) return -1;
    rc = pn_params_set(o->state, "step", s);
    pn_release(s);
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
