/* test_optimizers.c — every optimizer's first steps (Adafactor and Muon included) against its
 * formula computed here in float64, parameter groups, schedules, global-norm clipping, and
 * resuming from saved state equal to training without a stop. */
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

/* ───────────────────────────── Adafactor ───────────────────────────── */

typedef struct {
    const char *name;
    double lr, eps1, eps2, clip, decay, beta1, wd;
    bool scale, relative, warmup;
} af_config;

static double ref_rms(const double *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return sqrt(s / n);
}

/* One Adafactor step (mlx.optimizers.Adafactor) on p viewed as nb matrices (m, n) when
 * factored, else as a vector of nb * m * n; row (nb*m), col (nb*n), v, ea: the slots. */
static void ref_adafactor(const af_config *c, double *p, const double *g, int nb, int m, int n,
                          bool factored, double *row, double *col, double *v, double *ea, int t)
{
    enum { MAXE = 64 };
    int size = nb * m * n;
    double u[MAXE];
    double rel = c->relative ? fmin(c->warmup ? 1e-6 * t : 1e-2, 1 / sqrt(t)) : c->lr;
    double alpha = c->scale ? fmax(c->eps2, ref_rms(p, size)) * rel : rel;
    double b2 = 1 - pow(t, c->decay);
    for (int i = 0; i < size; i++) u[i] = g[i] * g[i] + c->eps1;
    if (factored) {
        for (int b = 0; b < nb; b++) {
            const double *ub = u + b * m * n;
            for (int i = 0; i < m; i++) {
                double s = 0;
                for (int j = 0; j < n; j++) s += ub[i * n + j];
                row[b * m + i] = b2 * row[b * m + i] + (1 - b2) * s / n;
            }
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int i = 0; i < m; i++) s += ub[i * n + j];
                col[b * n + j] = b2 * col[b * n + j] + (1 - b2) * s / m;
            }
            double rmean = 0;
            for (int i = 0; i < m; i++) rmean += row[b * m + i] / m;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    int e = b * m * n + i * n + j;
                    u[e] = g[e] / sqrt(row[b * m + i] / rmean) / sqrt(col[b * n + j]);
                }
        }
    } else {
        for (int i = 0; i < size; i++) {
            v[i] = b2 * v[i] + (1 - b2) * u[i];
            u[i] = g[i] / sqrt(v[i]);
        }
    }
    double d = fmax(ref_rms(u, size) / c->clip, 1.0);
    for (int i = 0; i < size; i++) {
        u[i] = alpha * u[i] / d;
        if (!isnan(c->beta1)) u[i] = ea[i] = c->beta1 * ea[i] + (1 - c->beta1) * u[i];
        if (c->wd != 0) p[i] -= p[i] * alpha * c->wd;
        p[i] -= u[i];
    }
}

static pn_optimizer *make_adafactor(const af_config *c)
{
    return pn_optim_adafactor(c->lr, c->eps1, c->eps2, c->clip, c->decay, c->beta1, c->wd, c->scale,
                              c->relative, c->warmup);
}

/* Checks state slot name of o against ref (count values, shape given). */
static void check_slot(pn_optimizer *o, const char *name, const int64_t *shape, int ndim,
                       const double *ref, const char *what)
{
    pn_array *a = pn_params_get(pn_optimizer_state(o), name);
    CHECK_MSG(a != NULL, "%s: no state %s", what, name);
    if (a) test_check_values(what, a, shape, ndim, PN_FLOAT64, ref, 1e-9, 1e-13);
}

TEST(adafactor_matches_formulas)
{
    const af_config configs[] = {
        {"defaults", NAN, 1e-30, 1e-3, 1.0, -0.8, NAN, 0, true, true, false},
        {"lr, unscaled", 0.05, 1e-30, 1e-3, 1.0, -0.8, NAN, 0, false, false, false},
        {"beta_1+wd+warmup", NAN, 1e-30, 1e-3, 1.0, -0.8, 0.9, 0.1, true, true, true},
        {"clip 0.3, scaled lr", 0.02, 1e-30, 0.5, 0.3, -0.5, 0.5, 0.05, true, false, false},
    };
    /* shapes: a vector (unfactored), a matrix and a batch of matrices (factored), a scalar */
    const int64_t shapes[4][3] = {{6}, {3, 4}, {2, 3, 4}, {0}};
    const int ndims[4] = {1, 2, 3, 0};
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        const af_config *c = &configs[k];
        for (int sh = 0; sh < 4; sh++) {
            pn_scope_push();
            int nd = ndims[sh], nb = nd == 3 ? (int)shapes[sh][0] : 1;
            int m = nd >= 2 ? (int)shapes[sh][nd - 2] : 1, n = nd >= 1 ? (int)shapes[sh][nd - 1] : 1;
            int size = nb * m * n;
            double p[24], g[24], row[24] = {0}, col[24] = {0}, v[24] = {0}, ea[24] = {0};
            for (int i = 0; i < size; i++) p[i] = test_uniform(-1, 1);
            pn_params *params = pn_params_new(), *grads = pn_params_new();
            pn_params_set(params, "w", pn_array_from_data(p, shapes[sh], nd, PN_FLOAT64));
            pn_optimizer *o = make_adafactor(c);
            CHECK_OK(o);
            for (int t = 1; t <= 3 && o; t++) {
                for (int i = 0; i < size; i++) g[i] = test_uniform(-1, 1);
                pn_params_set(grads, "w", pn_array_from_data(g, shapes[sh], nd, PN_FLOAT64));
                CHECK(pn_optimizer_update(o, params, grads) == 0);
                ref_adafactor(c, p, g, nb, m, n, nd >= 2, row, col, v, ea, t);
                char what[96];
                snprintf(what, sizeof what, "adafactor %s, ndim %d, step %d", c->name, nd, t);
                test_check_values(what, pn_params_get(params, "w"), shapes[sh], nd, PN_FLOAT64, p, 1e-9, 1e-13);
                pn_params *st = pn_optimizer_state(o);
                if (nd >= 2) {
                    int64_t cs[2] = {nb, n};
                    check_slot(o, "w.exp_avg_sq_row", shapes[sh], nd - 1, row, what);
                    check_slot(o, "w.exp_avg_sq_col", nd == 3 ? cs : cs + 1, nd - 1, col, what);
                    CHECK(pn_params_get(st, "w.exp_avg_sq") == NULL);
                } else {
                    check_slot(o, "w.exp_avg_sq", shapes[sh], nd, v, what);
                    CHECK(pn_params_get(st, "w.exp_avg_sq_row") == NULL);
                }
                if (!isnan(c->beta1)) check_slot(o, "w.exp_avg", shapes[sh], nd, ea, what);
                else CHECK(pn_params_get(st, "w.exp_avg") == NULL);
            }
            pn_optimizer_free(o);
            pn_params_free(params);
            pn_params_free(grads);
            pn_scope_pop();
        }
    }
}

/* ───────────────────────────── Muon ───────────────────────────── */

/* Newton-Schulz on x (m, n) row-major in place, as MLX's Muon. */
static void ref_newton_schulz(double *x, int m, int n, int steps)
{
    enum { MAXE = 64 };
    const double a = 3.4445, b = -4.7750, c = 2.0315;
    bool tall = m > n;
    int r = tall ? n : m, q = tall ? m : n; /* X is (r, q), r <= q */
    double X[MAXE], A[MAXE], B[MAXE], Y[MAXE], nrm = 0;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < q; j++) X[i * q + j] = tall ? x[j * n + i] : x[i * n + j];
    for (int i = 0; i < r * q; i++) nrm += X[i] * X[i];
    nrm = sqrt(nrm) + 1e-7;
    for (int i = 0; i < r * q; i++) X[i] /= nrm;
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++) {
                double acc = 0;
                for (int k = 0; k < q; k++) acc += X[i * q + k] * X[j * q + k];
                A[i * r + j] = acc;
            }
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++) {
                double acc = 0;
                for (int k = 0; k < r; k++) acc += A[i * r + k] * A[k * r + j];
                B[i * r + j] = b * A[i * r + j] + c * acc;
            }
        for (int i = 0; i < r; i++)
            for (int j = 0; j < q; j++) {
                double acc = 0;
                for (int k = 0; k < r; k++) acc += B[i * r + k] * X[k * q + j];
                Y[i * q + j] = a * X[i * q + j] + acc;
            }
        memcpy(X, Y, sizeof(double) * (size_t)(r * q));
    }
    for (int i = 0; i < r; i++)
        for (int j = 0; j < q; j++) {
            if (tall) x[j * n + i] = X[i * q + j];
            else x[i * n + j] = X[i * q + j];
        }
}

typedef struct {
    const char *name;
    double lr, momentum, wd;
    bool nesterov;
    int ns_steps;
} muon_config;

/* One Muon step on p of shape (shape[0], ...): ndim >= 2 orthogonalises the (shape[0], -1)
 * matrix and scales the step by sqrt(max(1, shape[-2] / shape[-1])). */
static void ref_muon(const muon_config *c, double *p, const double *g0, double *v,
                     const int64_t *shape, int nd, int size)
{
    double u[64];
    for (int i = 0; i < size; i++) {
        double g = g0[i] + c->wd * p[i];
        v[i] = c->momentum * v[i] + (1 - c->momentum) * g;
        u[i] = c->nesterov ? g * (1 - c->momentum) + v[i] * c->momentum : v[i];
    }
    double lr = c->lr;
    if (nd >= 2) {
        ref_newton_schulz(u, (int)shape[0], size / (int)shape[0], c->ns_steps);
        lr *= sqrt(fmax(1.0, (double)shape[nd - 2] / (double)shape[nd - 1]));
    }
    for (int i = 0; i < size; i++) p[i] -= lr * u[i];
}

TEST(muon_matches_formulas)
{
    const muon_config configs[] = {
        {"defaults", 0.02, 0.95, 0.01, true, 5},
        {"plain momentum", 0.05, 0.9, 0.0, false, 5},
        {"3 ns steps, wd", 0.01, 0.8, 0.1, true, 3},
    };
    /* tall and wide matrices, a conv-like 4-d filter, a vector, a scalar */
    const int64_t shapes[5][4] = {{5, 3}, {3, 5}, {4, 2, 3, 2}, {6}, {0}};
    const int ndims[5] = {2, 2, 4, 1, 0};
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        const muon_config *c = &configs[k];
        for (int sh = 0; sh < 5; sh++) {
            pn_scope_push();
            int nd = ndims[sh], size = 1;
            for (int d = 0; d < nd; d++) size *= (int)shapes[sh][d];
            double p[64], g[64], v[64] = {0};
            for (int i = 0; i < size; i++) p[i] = test_uniform(-1, 1);
            pn_params *params = pn_params_new(), *grads = pn_params_new();
            pn_params_set(params, "w", pn_array_from_data(p, shapes[sh], nd, PN_FLOAT64));
            pn_optimizer *o = pn_optim_muon(c->lr, c->momentum, c->wd, c->nesterov, c->ns_steps);
            CHECK_OK(o);
            for (int t = 1; t <= 3 && o; t++) {
                for (int i = 0; i < size; i++) g[i] = test_uniform(-1, 1);
                pn_params_set(grads, "w", pn_array_from_data(g, shapes[sh], nd, PN_FLOAT64));
                CHECK(pn_optimizer_update(o, params, grads) == 0);
                ref_muon(c, p, g, v, shapes[sh], nd, size);
                char what[96];
                snprintf(what, sizeof what, "muon %s, ndim %d, step %d", c->name, nd, t);
                test_check_values(what, pn_params_get(params, "w"), shapes[sh], nd, PN_FLOAT64, p, 1e-9, 1e-12);
                check_slot(o, "w.v", shapes[sh], nd, v, what);
            }
            pn_optimizer_free(o);
            pn_params_free(params);
            pn_params_free(grads);
            pn_scope_pop();
        }
    }
}

/* The orthogonalised update of a well-conditioned square matrix is close to orthogonal: with
 * momentum 0 and lr 1 one step moves p by U V^T, whose singular values Newton-Schulz puts in
 * about [0.7, 1.2]; checked on U U^T's diagonal. */
TEST(muon_update_is_near_orthogonal)
{
    pn_scope_push();
    enum { M = 8 };
    pn_params *params = pn_params_new(), *grads = pn_params_new();
    pn_params_set(params, "w", pn_zeros((int64_t[]){M, M}, 2, PN_FLOAT32));
    pn_params_set(grads, "w", test_random_array((int64_t[]){M, M}, 2, PN_FLOAT32, -1, 1));
    pn_optimizer *o = pn_optim_muon(1.0, 0.0, 0.0, false, 5);
    CHECK(pn_optimizer_update(o, params, grads) == 0);
    pn_array *w = pn_params_get(params, "w");
    CHECK(pn_array_dtype(w) == PN_FLOAT32);
    double *d = test_to_f64(pn_matmul(w, pn_transpose(w, NULL, 0)));
    for (int i = 0; d && i < M; i++) CHECK_MSG(d[i * M + i] > 0.3 && d[i * M + i] < 1.6, "diag %g", d[i * M + i]);
    free(d);
    pn_optimizer_free(o);
    pn_params_free(params);
    pn_params_free(grads);
    pn_scope_pop();
}

/* ───────────────────────────── parameter groups ───────────────────────────── */

TEST(groups_use_their_own_hyperparameters)
{
    pn_scope_push();
    /* "enc" (prefix) -> AdamW(lr 0.01, wd 0.1); "dec.w" (a name) -> SGD with momentum, wd and a
     * step-decay schedule; the rest ("encoder.x" is not under "enc") -> plain SGD lr 0.1 */
    const char *names[5] = {"enc.w", "enc.b", "dec.w", "head", "encoder.x"};
    const int64_t shapes[5][2] = {{2, 3}, {6}, {3, 2}, {6}, {6}};
    const int nds[5] = {2, 1, 2, 1, 1};
    const config adamw = {"adamw", 0.01, 0.9, 0.999, 1e-8, 0.1, 0, 0, false, false};
    const config sgdm = {"sgd", 0.5, 0, 0, 0, 0.01, 0.9, 0, false, false};
    const config sgd = {"sgd", 0.1, 0, 0, 0, 0, 0, 0, false, false};
    const config *cfg[5] = {&adamw, &adamw, &sgdm, &sgd, &sgd};
    const int which[5] = {2, 2, 0, 0, 0};
    pn_optimizer *o = make(&sgd, 0);
    CHECK(pn_optimizer_add_group(o, (const char *[]){"enc"}, 1, make(&adamw, 2)) == 0);
    CHECK(pn_optimizer_add_group(o, (const char *[]){"nothing", "dec.w"}, 2, make(&sgdm, 0)) == 1);
    pn_optimizer_set_schedule(pn_optimizer_group(o, 1), pn_schedule_step_decay(0.5, 0.5, 1));
    CHECK(pn_optimizer_group(o, 2) == NULL && pn_optimizer_group(o, -1) == NULL);
    double p[5][N], s0[5][N] = {{0}}, s1[5][N] = {{0}}, g[N];
    pn_params *params = pn_params_new(), *grads = pn_params_new();
    for (int k = 0; k < 5; k++) {
        for (int i = 0; i < N; i++) p[k][i] = test_uniform(-1, 1);
        pn_params_set(params, names[k], pn_array_from_data(p[k], shapes[k], nds[k], PN_FLOAT64));
    }
    for (int t = 1; t <= 3; t++) {
        CHECK(fabs(pn_optimizer_learning_rate(pn_optimizer_group(o, 1)) - 0.5 * pow(0.5, t - 1)) < 1e-15);
        for (int k = 0; k < 5; k++) {
            for (int i = 0; i < N; i++) g[i] = test_uniform(-1, 1);
            pn_params_set(grads, names[k], pn_array_from_data(g, shapes[k], nds[k], PN_FLOAT64));
            config c = *cfg[k];
            if (k == 2) c.lr = 0.5 * pow(0.5, t - 1);
            ref_step(&c, which[k], p[k], g, s0[k], s1[k], t);
        }
        CHECK(pn_optimizer_update(o, params, grads) == 0);
        for (int k = 0; k < 5; k++) {
            char what[64];
            snprintf(what, sizeof what, "group param %s step %d", names[k], t);
            test_check_values(what, pn_params_get(params, names[k]), shapes[k], nds[k], PN_FLOAT64, p[k], 1e-10, 1e-12);
        }
    }
    pn_params *st = pn_optimizer_state(o);
    CHECK(pn_params_get(st, "enc.w.m") && pn_params_get(st, "enc.b.v") && pn_params_get(st, "dec.w.v"));
    CHECK(pn_params_get(st, "head.v") && !pn_params_get(st, "head.m") && !pn_params_get(st, "encoder.x.m"));
    CHECK(pn_item_int(pn_params_get(st, "step")) == 3);
    /* errors: the rule is freed on failure (LeakSanitizer checks) */
    CHECK(pn_optimizer_add_group(o, NULL, 1, make(&sgd, 0)) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    CHECK(pn_optimizer_add_group(o, (const char *[]){NULL}, 1, make(&sgd, 0)) == -1);
    CHECK(pn_optimizer_add_group(o, (const char *[]){"x"}, 1, o) == -1);
    CHECK(pn_optimizer_add_group(o, (const char *[]){"x"}, 1, NULL) == -1);
    CHECK(pn_optimizer_add_group(NULL, (const char *[]){"x"}, 1, make(&sgd, 0)) == -1);
    pn_optimizer *nested = make(&sgd, 0);
    CHECK(pn_optimizer_add_group(nested, (const char *[]){""}, 1, make(&sgd, 0)) == 0);
    CHECK(pn_optimizer_add_group(o, (const char *[]){"x"}, 1, nested) == -1);
    CHECK(pn_optimizer_add_group(o, NULL, 0, make(&sgd, 0)) == 2); /* empty: matches nothing */
    pn_clear_error();
    pn_optimizer_free(o);
    pn_params_free(params);
    pn_params_free(grads);
    pn_scope_pop();
}

/* Adafactor (main rule, with beta_1) and Muon (a group) saved after 2 steps and resumed in fresh
 * optimizers give bit-identical parameters to 4 uninterrupted steps. */
TEST(groups_resume_equals_uninterrupted)
{
    pn_scope_push();
    const char *names[3] = {"mat", "vec", "proj.w"};
    const int64_t shapes[3][2] = {{4, 3}, {5}, {3, 4}};
    const int nds[3] = {2, 1, 2};
    pn_optimizer *opt[2];
    for (int j = 0; j < 2; j++) {
        opt[j] = pn_optim_adafactor(NAN, 1e-30, 1e-3, 1.0, -0.8, 0.9, 0.01, true, true, false);
        CHECK(pn_optimizer_add_group(opt[j], (const char *[]){"proj"}, 1, pn_optim_muon(0.02, 0.95, 0.01, true, 5)) == 0);
    }
    pn_params *pa = pn_params_new(), *grads = pn_params_new(), *pb = NULL;
    for (int k = 0; k < 3; k++)
        pn_params_set(pa, names[k], test_random_array(shapes[k], nds[k], PN_FLOAT32, -1, 1));
    for (int t = 0; t < STEPS; t++) {
        for (int k = 0; k < 3; k++)
            pn_params_set(grads, names[k], test_random_array(shapes[k], nds[k], PN_FLOAT32, -1, 1));
        CHECK(pn_optimizer_update(opt[0], pa, grads) == 0);
        if (t == 1) {
            CHECK(pn_save_params("/tmp/ponte_gresume_p.safetensors", pa) == 0);
            CHECK(pn_save_params("/tmp/ponte_gresume_s.safetensors", pn_optimizer_state(opt[0])) == 0);
            pb = pn_load_params("/tmp/ponte_gresume_p.safetensors");
            pn_params *st = pn_load_params("/tmp/ponte_gresume_s.safetensors");
            CHECK_OK(pb);
            CHECK_OK(st);
            CHECK(st && pn_params_get(st, "mat.exp_avg_sq_row") && pn_params_get(st, "proj.w.v") &&
                  pn_params_get(st, "vec.exp_avg"));
            for (int i = 0; st && i < pn_params_count(st); i++)
                pn_params_set(pn_optimizer_state(opt[1]), pn_params_name(st, i), pn_params_at(st, i));
            pn_params_free(st);
        } else if (t > 1 && pb) {
            CHECK(pn_optimizer_update(opt[1], pb, grads) == 0);
        }
    }
    for (int k = 0; pb && k < 3; k++) {
        pn_array *x = pn_params_get(pa, names[k]), *y = pn_params_get(pb, names[k]);
        const void *dx = pn_data(x), *dy = pn_data(y);
        CHECK_MSG(dx && dy && memcmp(dx, dy, (size_t)pn_size(x) * sizeof(float)) == 0, "%s differs", names[k]);
    }
    remove("/tmp/ponte_gresume_p.safetensors");
    remove("/tmp/ponte_gresume_s.safetensors");
    pn_optimizer_free(opt[0]);
    pn_optimizer_free(opt[1]);
    pn_params_free(pa);
    pn_params_free(pb);
    pn_params_free(grads);
    pn_scope_pop();
}

TEST(adafactor_muon_errors)
{
    pn_scope_push();
    /* no learning rate without relative_step; clip_threshold 0; negative ns_steps */
    pn_optimizer *bad[3] = {
        pn_optim_adafactor(NAN, 1e-30, 1e-3, 1.0, -0.8, NAN, 0, true, false, false),
        pn_optim_adafactor(NAN, 1e-30, 1e-3, 0.0, -0.8, NAN, 0, true, true, false),
        pn_optim_muon(0.02, 0.95, 0.01, true, -1),
    };
    for (int i = 0; i < 3; i++) CHECK_MSG(bad[i] == NULL, "bad optimizer %d was accepted", i);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    /* float32 parameters keep their dtype, and so do the factored slots */
    pn_params *params = pn_params_new(), *grads = pn_params_new();
    pn_params_set(params, "w", test_random_array((int64_t[]){3, 2}, 2, PN_FLOAT32, -1, 1));
    pn_params_set(grads, "w", test_random_array((int64_t[]){3, 2}, 2, PN_FLOAT32, -1, 1));
    pn_optimizer *o = pn_optim_adafactor(NAN, 1e-30, 1e-3, 1.0, -0.8, NAN, 0, true, true, false);
    CHECK(pn_optimizer_update(o, params, grads) == 0);
    CHECK(pn_array_dtype(pn_params_get(params, "w")) == PN_FLOAT32);
    CHECK(pn_array_dtype(pn_params_get(pn_optimizer_state(o), "w.exp_avg_sq_col")) == PN_FLOAT32);
    pn_params_set(grads, "w", test_random_array((int64_t[]){6}, 1, PN_FLOAT32, -1, 1));
    CHECK(pn_optimizer_update(o, params, grads) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_optimizer_free(o);
    pn_params_free(params);
    pn_params_free(grads);
    pn_scope_pop();
}

/* ───────────────────────────── fused OptimUpdate ───────────────────────────── */

#include "ops/optim.h"

/* One fused-step case: a rule, its flags and coefficients (ops/optim.h's layout). */
typedef struct {
    const char *name;
    pnN_optim_params prm;
} fused_case;

/* Every rule with every option it has, coefficients as src/nn/optimizers.c passes them. */
static const fused_case FUSED_CASES[] = {
    {"sgd", {PNN_OPT_SGD, 0, {0, 0.1}}},
    {"sgd+wd", {PNN_OPT_SGD, PNN_OPT_WD, {0.01, 0.1}}},
    {"momentum", {PNN_OPT_MOMENTUM, 0, {0, 0.05, 0.9, 1}}},
    {"momentum+wd+damp", {PNN_OPT_MOMENTUM, PNN_OPT_WD | PNN_OPT_DAMP, {0.01, 0.05, 0.9, 0.7}}},
    {"nesterov+wd", {PNN_OPT_MOMENTUM, PNN_OPT_WD | PNN_OPT_NESTEROV, {0.01, 0.05, 0.9, 1}}},
    {"adam", {PNN_OPT_ADAM, 0, {0.9, 0.1, 0.999, 1e-3, 1e-8, 1, 1e-2, 1}}},
    {"adamw+bias", {PNN_OPT_ADAM, 0, {0.9, 0.1, 0.999, 1e-3, 1e-8, 1 - 1e-3, 1e-2 / 0.271, 1 / sqrt(2.997e-3)}}},
    {"rmsprop", {PNN_OPT_RMSPROP, 0, {0.99, 0.01, 1e-2, 1e-8}}},
    {"adagrad", {PNN_OPT_ADAGRAD, 0, {0.1, 1e-8}}},
    {"adadelta", {PNN_OPT_ADADELTA, 0, {0.9, 0.1, 1e-6, 1.0}}},
    {"adamax", {PNN_OPT_ADAMAX, 0, {0.9, 0.1, 0.999, 2e-3, 1e-8}}},
    {"lion", {PNN_OPT_LION, 0, {0.9, 0.1, 0.99, 0.01, 1, 1e-3}}},
    {"lion+wd", {PNN_OPT_LION, PNN_OPT_WD, {0.9, 0.1, 0.99, 0.01, 1 - 1e-4, 1e-3}}},
};
enum { NFUSED = sizeof FUSED_CASES / sizeof *FUSED_CASES };

/* The float64 reference of one fused step over the (rounded) input values: x = p, g, a, b;
 * r = p', a', b'. Written from the formulas, independently of the kernels' shared step. */
static void ref_optim_update(const pnN_optim_params *c, int64_t n, double *const *x, double **r)
{
    const double *k = c->k;
    bool wd = c->flags & PNN_OPT_WD;
    for (int64_t i = 0; i < n; i++) {
        double p = x[0][i], g = x[1][i], a = x[2] ? x[2][i] : 0, b = x[3] ? x[3][i] : 0;
        double po = 0, ao = a, bo = b;
        switch (c->rule) {
        case PNN_OPT_SGD: po = p - k[1] * (g + (wd ? k[0] * p : 0)); break;
        case PNN_OPT_MOMENTUM: {
            double gg = g + (wd ? k[0] * p : 0);
            ao = k[2] * a + (c->flags & PNN_OPT_DAMP ? k[3] : 1) * gg;
            po = p - k[1] * (c->flags & PNN_OPT_NESTEROV ? gg + k[2] * ao : ao);
            break;
        }
        case PNN_OPT_ADAM:
            ao = k[0] * a + k[1] * g;
            bo = k[2] * b + k[3] * g * g;
            po = p * k[5] - k[6] * ao / (sqrt(bo) * k[7] + k[4]);
            break;
        case PNN_OPT_RMSPROP:
            ao = k[0] * a + k[1] * g * g;
            po = p - k[2] * g / (sqrt(ao) + k[3]);
            break;
        case PNN_OPT_ADAGRAD:
            ao = a + g * g;
            po = p - k[0] * g / (sqrt(ao) + k[1]);
            break;
        case PNN_OPT_ADADELTA: {
            ao = k[0] * a + k[1] * g * g;
            double d = sqrt(b + k[2]) / sqrt(ao + k[2]) * g;
            bo = k[0] * b + k[1] * d * d;
            po = p - k[3] * d;
            break;
        }
        case PNN_OPT_ADAMAX:
            ao = k[0] * a + k[1] * g;
            bo = fmax(k[2] * b, fabs(g));
            po = p - k[3] * ao / (bo + k[4]);
            break;
        case PNN_OPT_LION: {
            double u = k[0] * a + k[1] * g;
            ao = k[2] * a + k[3] * g;
            po = (wd ? k[4] * p : p) - k[5] * (u > 0 ? 1 : u < 0 ? -1 : 0);
            break;
        }
        }
        r[0][i] = po;
        if (r[1]) r[1][i] = ao;
        if (r[2]) r[2][i] = bo;
    }
}

/* Runs the fused step on in = (p, g, slots...) and checks every output against the reference
 * computed from the inputs' values. in_place: the caller opened a scope owning only the
 * inputs; it is closed here before the evaluation (the outputs move out), so p and the slots
 * donate their buffers (checked) and the step runs in place. */
static void check_fused(const char *what, pn_array *const *in, const pnN_optim_params *c, bool in_place)
{
    const int ns = pnN_optim_nslots(c->rule), nout = 1 + ns;
    pn_dtype t = in[0]->dtype;
    int64_t n = pn_size(in[0]), shape[PNC_MAX_NDIM];
    int nd = in[0]->ndim;
    memcpy(shape, in[0]->shape, sizeof(int64_t) * (size_t)nd);
    double *x[4] = {NULL, NULL, NULL, NULL}, *r[3] = {NULL, NULL, NULL};
    pnC_buffer *bufs[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 2 + ns; k++) x[k] = test_to_f64(in[k]);
    for (int j = 0; j < nout; j++) {
        r[j] = malloc(sizeof(double) * (size_t)(n ? n : 1));
        bufs[j] = in[j ? j + 1 : 0]->buf;
    }
    ref_optim_update(c, n, x, r);
    pn_array *out[3] = {NULL, NULL, NULL};
    int rc = pnN_optim_update(in[0], in[1], in + 2, c, out);
    CHECK_MSG(rc == 0, "%s: not fused (rc %d): %s", what, rc, pn_last_error_message());
    if (in_place) pn_scope_pop_keep(out, rc == 0 ? nout : 0); /* only the node holds in now */
    if (rc == 0) {
        CHECK(pn_eval(out, nout) == 0);
        if (in_place && n > 0)
            for (int j = 0; j < nout; j++)
                CHECK_MSG(out[j]->buf == bufs[j], "%s: output %d did not reuse its input", what, j);
        double tol = test_tol(t);
        for (int j = 0; j < nout; j++) {
            char w[128];
            snprintf(w, sizeof w, "%s output %d", what, j);
            test_check_values(w, out[j], shape, nd, t, r[j], tol, tol * 1e-2);
        }
    }
    for (int k = 0; k < 4; k++) free(x[k]);
    for (int j = 0; j < 3; j++) free(r[j]);
}

/* p, g in [-1, 1]; the slots in [0, 1] (second moments must not be negative). */
static void fused_inputs(const int64_t *shape, int nd, pn_dtype t, int ns, pn_array **in)
{
    for (int k = 0; k < 2 + ns; k++) in[k] = test_random_array(shape, nd, t, k >= 2 ? 0 : -1, 1);
    pn_eval(in, 2 + ns);
}

TEST(fused_steps_match_float64)
{
    pn_scope_push();
    const pn_dtype dtypes[] = {PN_FLOAT32, PN_FLOAT64, PN_BFLOAT16, PN_FLOAT16};
    const int64_t big = test_quick() ? 70 : 300;
    const struct {
        int nd;
        int64_t shape[3];
    } shapes[] = {{0, {0}}, {1, {7}}, {2, {3, 5}}, {3, {2, 3, 4}}, {2, {big, 130}}};
    int cases = 0;
    for (int f = 0; f < NFUSED; f++)
        for (size_t d = 0; d < sizeof dtypes / sizeof *dtypes; d++)
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
                pn_scope_push();
                const pnN_optim_params *c = &FUSED_CASES[f].prm;
                pn_array *in[4];
                fused_inputs(shapes[s].shape, shapes[s].nd, dtypes[d], pnN_optim_nslots(c->rule), in);
                char what[96];
                snprintf(what, sizeof what, "%s %s ndim=%d", FUSED_CASES[f].name, pn_dtype_name(dtypes[d]),
                         shapes[s].nd);
                check_fused(what, in, c, false);
                cases++;
                pn_scope_pop();
            }
    CHECK(cases == NFUSED * 20);
    pn_scope_pop();
}

TEST(fused_steps_strided_empty_in_place)
{
    pn_scope_push();
    /* one rule per slot count: sgd+wd (0), momentum (1), adam (2) */
    const int picks[] = {1, 3, 6};
    for (size_t q = 0; q < sizeof picks / sizeof *picks; q++) {
        const fused_case *fc = &FUSED_CASES[picks[q]];
        const int ns = pnN_optim_nslots(fc->prm.rule);
        char what[96];
        /* transposed inputs (all, or only some of them) */
        for (int mode = 0; mode < 2; mode++) {
            pn_scope_push();
            pn_array *in[4];
            fused_inputs((int64_t[]){9, 4}, 2, PN_FLOAT32, ns, in);
            for (int k = 0; k < 2 + ns; k++)
                if (mode == 0 || k % 2 == 0) in[k] = pn_transpose(in[k], NULL, 0);
            if (mode == 1)
                for (int k = 1; k < 2 + ns; k += 2) in[k] = pn_reshape(in[k], (int64_t[]){4, 9}, 2);
            pn_eval(in, 2 + ns);
            snprintf(what, sizeof what, "%s %s", fc->name, mode ? "some transposed" : "all transposed");
            check_fused(what, in, &fc->prm, false);
            pn_scope_pop();
        }
        /* empty arrays */
        {
            pn_array *in[4];
            fused_inputs((int64_t[]){0, 3}, 2, PN_FLOAT32, ns, in);
            snprintf(what, sizeof what, "%s empty", fc->name);
            check_fused(what, in, &fc->prm, false);
        }
        /* the step runs in place when nothing else holds p and the slots */
        for (int d = 0; d < 2; d++) {
            pn_dtype t = d ? PN_BFLOAT16 : PN_FLOAT32;
            pn_array *in[4];
            pn_scope_push(); /* closed by check_fused */
            fused_inputs((int64_t[]){5, 11}, 2, t, ns, in);
            snprintf(what, sizeof what, "%s in place %s", fc->name, pn_dtype_name(t));
            check_fused(what, in, &fc->prm, true);
        }
    }
    pn_scope_pop();
}

TEST(fused_steps_not_fusable)
{
    pn_scope_push();
    const pnN_optim_params c = FUSED_CASES[6].prm; /* adam */
    pn_array *in[4], *out[3] = {NULL, NULL, NULL};
    fused_inputs((int64_t[]){2, 3}, 2, PN_FLOAT32, 2, in);
    pn_array *other_shape = test_random_array((int64_t[]){3, 2}, 2, PN_FLOAT32, -1, 1);
    pn_array *other_dtype = test_random_array((int64_t[]){2, 3}, 2, PN_FLOAT64, -1, 1);
    pn_array *ints = test_random_array((int64_t[]){2, 3}, 2, PN_INT32, -5, 5);
    CHECK(pnN_optim_update(in[0], in[1], (pn_array *[]){other_shape, in[3]}, &c, out) == 1 && out[0] == NULL);
    CHECK(pnN_optim_update(in[0], other_dtype, in + 2, &c, out) == 1);
    CHECK(pnN_optim_update(ints, ints, (pn_array *[]){ints, ints}, &c, out) == 1);
    pnC_trace_push(); /* a transformation tracing: stay composed (differentiable) */
    CHECK(pnN_optim_update(in[0], in[1], in + 2, &c, out) == 1);
    pnC_trace_pop();
    CHECK(pnN_optim_set_fused(false) == true); /* fusion switched off */
    CHECK(pnN_optim_update(in[0], in[1], in + 2, &c, out) == 1);
    CHECK(pnN_optim_set_fused(true) == false);
    CHECK(pn_last_error() == PN_OK);
    pnN_optim_params bad = c;
    bad.rule = PNN_OPT_NRULES;
    for (int e = 0; e < 3; e++) { /* a NULL input, NULL slots, an unknown rule */
        int rc = e == 0   ? pnN_optim_update(in[0], NULL, in + 2, &c, out)
                 : e == 1 ? pnN_optim_update(in[0], in[1], NULL, &c, out)
                          : pnN_optim_update(in[0], in[1], in + 2, &bad, out);
        CHECK_MSG(rc == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT, "error case %d: rc %d", e, rc);
        pn_clear_error();
    }
    CHECK(pnN_optim_nslots(-1) == -1 && pnN_optim_nslots(PNN_OPT_ADADELTA) == 2);
    /* the rules fall back to composed ops for a mixed-dtype step and still match */
    pn_params *params = pn_params_new(), *grads = pn_params_new();
    double p[N], g[N], s0[N] = {0}, s1[N] = {0};
    for (int i = 0; i < N; i++) p[i] = test_uniform(-1, 1), g[i] = test_uniform(-1, 1);
    pn_params_set(params, "w", pn_array_from_data(p, (int64_t[]){N}, 1, PN_FLOAT64));
    pn_params_set(grads, "w", pn_astype(pn_array_from_data(g, (int64_t[]){N}, 1, PN_FLOAT64), PN_FLOAT32));
    for (int i = 0; i < N; i++) g[i] = (float)g[i];
    config cf = {"adamw mixed", 1e-2, 0.9, 0.999, 1e-8, 0.01, 0, 0, false, true};
    pn_optimizer *o = make(&cf, 2);
    CHECK(pn_optimizer_update(o, params, grads) == 0);
    ref_step(&cf, 2, p, g, s0, s1, 1);
    test_check_values("adamw mixed dtypes", pn_params_get(params, "w"), (int64_t[]){N}, 1, PN_FLOAT64, p, 1e-6, 1e-8);
    pn_optimizer_free(o);
    pn_params_free(params);
    pn_params_free(grads);
    pn_scope_pop();
}

/* Every rule and option of update_rules_match_formulas through pn_optimizer_update, fused and
 * composed (fusion switched off), over float32 and float64 parameters for a few steps: the
 * parameter and every state slot agree to rounding (the fused step runs the composed rule's
 * operations in its order, in the same precision; the compiler may contract a*b + c into one
 * fused multiply-add there, hence an absolute tolerance of a few ulps of 1, the terms' size),
 * and the fused update is one node. */
TEST(fused_equals_composed_per_rule)
{
    const config configs[] = {
        {"sgd+wd", 0.1, 0, 0, 0, 0.01, 0, 0, false, false},
        {"sgd+momentum+wd", 0.05, 0, 0, 0, 0.01, 0.9, 0, false, false},
        {"sgd+nesterov", 0.05, 0, 0, 0, 0, 0.9, 0, true, false},
        {"sgd+dampening", 0.05, 0, 0, 0, 0, 0.9, 0.3, false, false},
        {"adam+bias", 1e-2, 0.9, 0.999, 1e-8, 0, 0, 0, false, true},
        {"adamw", 1e-2, 0.9, 0.999, 1e-8, 0.01, 0, 0, false, false},
        {"rmsprop", 1e-2, 0.99, 0, 1e-8, 0, 0, 0, false, false},
        {"adagrad", 1e-1, 0, 0, 1e-8, 0, 0, 0, false, false},
        {"adadelta", 1.0, 0.9, 0, 1e-6, 0, 0, 0, false, false},
        {"adamax", 2e-3, 0.9, 0.999, 1e-8, 0, 0, 0, false, false},
        {"lion+wd", 1e-3, 0.9, 0.99, 0, 0.1, 0, 0, false, false},
    };
    const int which[] = {0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7};
    const int64_t shape[2] = {test_quick() ? 9 : 37, 65};
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++)
        for (int d = 0; d < 2; d++) {
            pn_dtype t = d ? PN_FLOAT64 : PN_FLOAT32;
            pn_scope_push();
            pn_array *p0 = test_random_array(shape, 2, t, -1, 1), *gs[3];
            for (int s = 0; s < 3; s++) gs[s] = test_random_array(shape, 2, t, -1, 1);
            pn_params *params[2], *grads = pn_params_new();
            pn_optimizer *o[2];
            for (int f = 0; f < 2; f++) { /* f = 1: fused */
                params[f] = pn_params_new();
                pn_params_set(params[f], "w", p0);
                o[f] = make(&configs[k], which[k]);
                pnN_optim_set_fused(f == 1);
                for (int s = 0; s < 3; s++) {
                    pn_params_set(grads, "w", gs[s]);
                    CHECK(pn_optimizer_update(o[f], params[f], grads) == 0);
                    pn_array *w = pn_params_get(params[f], "w");
                    if (f == 1 && s == 0)
                        CHECK_MSG(w->node && strcmp(w->node->prim->name, "OptimUpdate") == 0,
                                  "%s: the fused update is not one OptimUpdate node", configs[k].name);
                    pn_eval(&w, 1);
                }
            }
            pnN_optim_set_fused(true);
            double rtol = t == PN_FLOAT64 ? 1e-13 : 2e-6, atol = t == PN_FLOAT64 ? 1e-14 : 1e-6;
            pn_params *st[2] = {pn_optimizer_state(o[0]), pn_optimizer_state(o[1])};
            for (int i = 0; i <= pn_params_count(st[1]); i++) {
                /* i == count: the parameter itself */
                bool param = i == pn_params_count(st[1]);
                const char *name = param ? "w" : pn_params_name(st[1], i);
                pn_array *a = pn_params_get(param ? params[1] : st[1], name);
                pn_array *b = pn_params_get(param ? params[0] : st[0], name);
                CHECK_MSG(a && b, "%s: %s missing", configs[k].name, name);
                if (!a || !b || strcmp(name, "step") == 0) continue;
                double *ref = test_to_f64(b);
                char what[96];
                snprintf(what, sizeof what, "%s %s fused vs composed: %s", configs[k].name, pn_dtype_name(t), name);
                test_check_values(what, a, shape, 2, t, ref, rtol, atol);
                free(ref);
            }
            for (int f = 0; f < 2; f++) {
                pn_optimizer_free(o[f]);
                pn_params_free(params[f]);
            }
            pn_params_free(grads);
            pn_scope_pop();
        }
}
