/* test_optimizers.c — every optimizer's first steps against its formula computed here in
 * float64, schedules against theirs, global-norm clipping, and resuming from saved state
 * equal to training without a stop. */
#include "harness.h"

#include <string.h>

#include "core/core.h"

enum { N = 6, STEPS = 4 };

typedef struct {
    const char *name;
    double lr, b1, b2, eps, wd, momentum, dampening;
    bool nesterov, bias;
} config;

/* The reference update rules (mlx.optimizers), one step on element arrays. */
static void ref_step(const config *c, int which, double *p, const double *g0, double *s0,
                     double *s1, int step)
{
    for (int i = 0; i < N; i++) {
        double g = g0[i];
        switch (which) {
        case 0: /* sgd */
            g += c->wd * p[i];
            if (c->momentum <= 0) { p[i] -= c->lr * g; break; }
            s0[i] = c->momentum * s0[i] + (c->dampening > 0 ? (1 - c->dampening) * g : g);
            p[i] -= c->lr * (c->nesterov ? g + c->momentum * s0[i] : s0[i]);
            break;
        case 2: /* adamw */
            p[i] *= 1 - c->lr * c->wd;
            /* fall through */
        case 1: /* adam */
            s0[i] = c->b1 * s0[i] + (1 - c->b1) * g;
            s1[i] = c->b2 * s1[i] + (1 - c->b2) * g * g;
            if (c->bias)
                p[i] -= (c->lr / (1 - pow(c->b1, step))) * s0[i] /
                        (sqrt(s1[i]) / sqrt(1 - pow(c->b2, step)) + c->eps);
            else
                p[i] -= c->lr * s0[i] / (sqrt(s1[i]) + c->eps);
            break;
        case 3: /* rmsprop */
            s0[i] = c->b1 * s0[i] + (1 - c->b1) * g * g;
            p[i] -= c->lr * g / (sqrt(s0[i]) + c->eps);
            break;
        case 4: /* adagrad */
            s0[i] += g * g;
            p[i] -= c->lr * g / (sqrt(s0[i]) + c->eps);
            break;
        case 5: { /* adadelta */
            s0[i] = c->b1 * s0[i] + (1 - c->b1) * g * g;
            double d = sqrt(s1[i] + c->eps) / sqrt(s0[i] + c->eps) * g;
            s1[i] = c->b1 * s1[i] + (1 - c->b1) * d * d;
            p[i] -= c->lr * d;
            break;
        }
        case 6: /* adamax */
            s0[i] = c->b1 * s0[i] + (1 - c->b1) * g;
            s1[i] = fmax(c->b2 * s1[i], fabs(g));
            p[i] -= c->lr * s0[i] / (s1[i] + c->eps);
            break;
        case 7: { /* lion */
            double u = c->b1 * s0[i] + (1 - c->b1) * g;
            s0[i] = c->b2 * s0[i] + (1 - c->b2) * g;
            if (c->wd > 0) p[i] *= 1 - c->lr * c->wd;
            p[i] -= c->lr * (u > 0 ? 1 : u < 0 ? -1 : 0);
            break;
        }
        }
    }
}

static pn_optimizer *make(const config *c, int which)
{
    switch (which) {
    case 0: return pn_optim_sgd(c->lr, c->momentum, c->wd, c->dampening, c->nesterov);
    case 1: return pn_optim_adam(c->lr, c->b1, c->b2, c->eps, c->bias);
    case 2: return pn_optim_adamw(c->lr, c->b1, c->b2, c->eps, c->wd, c->bias);
    case 3: return pn_optim_rmsprop(c->lr, c->b1, c->eps);
    case 4: return pn_optim_adagrad(c->lr, c->eps);
    case 5: return pn_optim_adadelta(c->lr, c->b1, c->eps);
    case 6: return pn_optim_adamax(c->lr, c->b1, c->b2, c->eps);
    default: return pn_optim_lion(c->lr, c->b1, c->b2, c->wd);
    }
}

TEST(update_rules_match_formulas)
{
    const config configs[] = {
        {"sgd", 0.1, 0, 0, 0, 0, 0, 0, false, false},
        {"sgd+momentum+wd", 0.05, 0, 0, 0, 0.01, 0.9, 0, false, false},
        {"sgd+nesterov", 0.05, 0, 0, 0, 0, 0.9, 0, true, false},
        {"sgd+dampening", 0.05, 0, 0, 0, 0, 0.9, 0.3, false, false},
        {"adam", 1e-2, 0.9, 0.999, 1e-8, 0, 0, 0, false, false},
        {"adam+bias", 1e-2, 0.9, 0.999, 1e-8, 0, 0, 0, false, true},
        {"adamw", 1e-2, 0.9, 0.999, 1e-8, 0.01, 0, 0, false, false},
        {"rmsprop", 1e-2, 0.99, 0, 1e-8, 0, 0, 0, false, false},
        {"adagrad", 1e-1, 0, 0, 1e-8, 0, 0, 0, false, false},
        {"adadelta", 1.0, 0.9, 0, 1e-6, 0, 0, 0, false, false},
        {"adamax", 2e-3, 0.9, 0.999, 1e-8, 0, 0, 0, false, false},
        {"lion", 1e-3, 0.9, 0.99, 0, 0.1, 0, 0, false, false},
    };
    const int which[] = {0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7};
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        const config *c = &configs[k];
        pn_scope_push();
        double p[N], s0[N] = {0}, s1[N] = {0}, g[STEPS][N];
        for (int i = 0; i < N; i++) p[i] = test_uniform(-1, 1);
        for (int t = 0; t < STEPS; t++)
            for (int i = 0; i < N; i++) g[t][i] = test_uniform(-1, 1);
        pn_params *params = pn_params_new(), *grads = pn_params_new();
        pn_params_set(params, "w", pn_array_from_data(p, (int64_t[]){N}, 1, PN_FLOAT64));
        pn_optimizer *o = make(c, which[k]);
        CHECK_OK(o);
        for (int t = 0; t < STEPS && o; t++) {
            pn_params_set(grads, "w", pn_array_from_data(g[t], (int64_t[]){N}, 1, PN_FLOAT64));
            CHECK(pn_optimizer_update(o, params, grads) == 0);
            ref_step(c, which[k], p, g[t], s0, s1, t + 1);
            char what[64];
            snprintf(what, sizeof what, "%s step %d", c->name, t + 1);
            test_check_values(what, pn_params_get(params, "w"), (int64_t[]){N}, 1, PN_FLOAT64, p, 1e-10, 1e-12);
        }
        if (o) CHECK(pn_item_int(pn_params_get(pn_optimizer_state(o), "step")) == STEPS);
        pn_optimizer_free(o);
        pn_params_free(params);
        pn_params_free(grads);
        pn_scope_pop();
    }
}

TEST(float32_params_stay_float32)
{
    pn_scope_push();
    pn_params *params = pn_params_new(), *grads = pn_params_new();
    pn_params_set(params, "w", test_random_array((int64_t[]){3, 2}, 2, PN_FLOAT32, -1, 1));
    pn_params_set(grads, "w", test_random_array((int64_t[]){3, 2}, 2, PN_FLOAT32, -1, 1));
    pn_optimizer *o = pn_optim_adamw(1e-3, 0.9, 0.999, 1e-8, 0.01, true);
    CHECK(pn_optimizer_update(o, params, grads) == 0);
    CHECK(pn_array_dtype(pn_params_get(params, "w")) == PN_FLOAT32);
    CHECK(pn_array_dtype(pn_params_get(pn_optimizer_state(o), "w.m")) == PN_FLOAT32);
    /* a gradient of the wrong shape is an error, not a crash */
    pn_params_set(grads, "w", test_random_array((int64_t[]){2}, 1, PN_FLOAT32, -1, 1));
    CHECK(pn_optimizer_update(o, params, grads) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_optimizer_free(o);
    pn_params_free(params);
    pn_params_free(grads);
    CHECK(pn_optim_sgd(0.1, 0, 0, 0, true) == NULL && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_scope_pop();
}

TEST(schedules)
{
    pn_schedule *s = pn_schedule_cosine_decay(0.1, 100, 0.01);
    CHECK(fabs(pn_schedule_at(s, 0) - 0.1) < 1e-15);
    CHECK(fabs(pn_schedule_at(s, 50) - (0.01 + 0.5 * (1 + cos(M_PI * 0.5)) * 0.09)) < 1e-15);
    CHECK(fabs(pn_schedule_at(s, 200) - 0.01) < 1e-15);
    pn_schedule_free(s);
    s = pn_schedule_step_decay(1.0, 0.5, 10);
    CHECK(pn_schedule_at(s, 9) == 1.0 && pn_schedule_at(s, 10) == 0.5 && pn_schedule_at(s, 25) == 0.25);
    pn_schedule_free(s);
    s = pn_schedule_exponential_decay(0.1, 0.9);
    CHECK(fabs(pn_schedule_at(s, 3) - 0.1 * 0.729) < 1e-15);
    pn_schedule_free(s);
    /* warmup then cosine, as in MLX's join_schedules([linear, cosine], [10]) */
    s = pn_schedule_join(pn_schedule_linear(0, 1e-3, 10), pn_schedule_cosine_decay(1e-3, 100, 0), 10);
    CHECK(pn_schedule_at(s, 0) == 0);
    CHECK(fabs(pn_schedule_at(s, 5) - 5e-4) < 1e-15);
    CHECK(fabs(pn_schedule_at(s, 10) - 1e-3) < 1e-15);
    pn_optimizer *o = pn_optim_sgd(1, 0, 0, 0, false);
    pn_optimizer_set_schedule(o, s);
    CHECK(pn_optimizer_learning_rate(o) == 0);
    pn_optimizer_free(o);
    CHECK(pn_schedule_linear(0, 1, 0) == NULL && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
}

TEST(clip_grad_norm)
{
    pn_scope_push();
    pn_params *g = pn_params_new();
    double a[3] = {3, 0, 0}, b[2] = {0, 4};
    pn_params_set(g, "a", pn_array_from_data(a, (int64_t[]){3}, 1, PN_FLOAT64));
    pn_params_set(g, "b", pn_array_from_data(b, (int64_t[]){2}, 1, PN_FLOAT64));
    pn_array *norm = pn_clip_grad_norm(g, 1.0);
    CHECK(fabs(pn_item(norm) - 5) < 1e-5);
    double s = 1.0 / (5 + 1e-6);
    test_check_values("clipped a", pn_params_get(g, "a"), (int64_t[]){3}, 1, PN_FLOAT64,
                      (double[]){3 * s, 0, 0}, 1e-6, 1e-9);
    test_check_values("clipped b", pn_params_get(g, "b"), (int64_t[]){2}, 1, PN_FLOAT64,
                      (double[]){0, 4 * s}, 1e-6, 1e-9);
    pn_params_free(g);
    pn_scope_pop();
}

/* Saving params and state after 2 steps and continuing in a fresh optimizer gives exactly the
 * same parameters as 4 uninterrupted steps. */
TEST(resume_equals_uninterrupted)
{
    pn_scope_push();
    double p0[N], g[STEPS][N];
    for (int i = 0; i < N; i++) p0[i] = test_uniform(-1, 1);
    for (int t = 0; t < STEPS; t++)
        for (int i = 0; i < N; i++) g[t][i] = test_uniform(-1, 1);
    pn_params *pa = pn_params_new(), *grads = pn_params_new();
    pn_params_set(pa, "w", pn_array_from_data(p0, (int64_t[]){N}, 1, PN_FLOAT32));
    pn_optimizer *a = pn_optim_adam(1e-2, 0.9, 0.999, 1e-8, true);
    pn_params *pb = NULL;
    pn_optimizer *b = pn_optim_adam(1e-2, 0.9, 0.999, 1e-8, true);
    for (int t = 0; t < STEPS; t++) {
        pn_params_set(grads, "w", pn_array_from_data(g[t], (int64_t[]){N}, 1, PN_FLOAT32));
        CHECK(pn_optimizer_update(a, pa, grads) == 0);
        if (t == 1) {
            CHECK(pn_save_params("/tmp/ponte_resume_p.safetensors", pa) == 0);
            CHECK(pn_save_params("/tmp/ponte_resume_s.safetensors", pn_optimizer_state(a)) == 0);
            pb = pn_load_params("/tmp/ponte_resume_p.safetensors");
            pn_params *st = pn_load_params("/tmp/ponte_resume_s.safetensors");
            CHECK_OK(pb);
            CHECK_OK(st);
            for (int i = 0; st && i < pn_params_count(st); i++)
                pn_params_set(pn_optimizer_state(b), pn_params_name(st, i), pn_params_at(st, i));
            pn_params_free(st);
        } else if (t > 1 && pb) {
            CHECK(pn_optimizer_update(b, pb, grads) == 0);
        }
    }
    if (pb) {
        const void *x = pn_data(pn_params_get(pa, "w")), *y = pn_data(pn_params_get(pb, "w"));
        CHECK(x && y && memcmp(x, y, N * sizeof(float)) == 0);
    }
    remove("/tmp/ponte_resume_p.safetensors");
    remove("/tmp/ponte_resume_s.safetensors");
    pn_optimizer_free(a);
    pn_optimizer_free(b);
    pn_params_free(pa);
    pn_params_free(pb);
    pn_params_free(grads);
    pn_scope_pop();
}
