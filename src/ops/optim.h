/* optim.h — the fused optimizer step (src/ops/optim.c), internal to the library: the rule
 * table and the per-element arithmetic of every fusable update rule, shared by the
 * constructor, the CPU kernel (backend/cpu/optim.c) and the GPU kernel (backend/cuda/optim.cu)
 * so the three cannot drift apart. Plain C, C++-safe. */
#ifndef PONTE_OPS_OPTIM_H
#define PONTE_OPS_OPTIM_H

#include "ponte.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The fusable rules: X(ENUM, name, number of state slots). One OptimUpdate node reads the
 * parameter, its gradient and the slots and writes the new parameter and slots in one pass.
 * The coefficients k[] of each rule (computed on the host by src/nn/optimizers.c, rounded by
 * the kernels to the compute type as weak scalars would be) and the arithmetic, in the
 * composed rule's operation order:
 *   SGD       k = wd, lr                      g += wd*p (PNN_OPT_WD);  p - lr*g
 *   MOMENTUM  k = wd, lr, mu, 1-dampening     g += wd*p (WD);  v = mu*v + ((1-d)*g (DAMP) or g);
 *                                             p - lr*(g + mu*v (NESTEROV) or v)
 *   ADAM      k = b1, 1-b1, b2, 1-b2, eps, decay, c1, c2
 *             m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*(g*g);  p*decay - (c1*m) / (sqrt(v)*c2 + eps)
 *             (decay = 1 - lr*wd for AdamW; c1 = lr, c2 = 1 without bias correction)
 *   RMSPROP   k = a, 1-a, lr, eps             v = a*v + (1-a)*(g*g);  p - (lr*g) / (sqrt(v) + eps)
 *   ADAGRAD   k = lr, eps                     v = v + g*g;  p - (lr*g) / (sqrt(v) + eps)
 *   ADADELTA  k = r, 1-r, eps, lr             v = r*v + (1-r)*(g*g);  d = (sqrt(u+eps) / sqrt(v+eps))*g;
 *                                             u = r*u + (1-r)*(d*d);  p - lr*d
 *   ADAMAX    k = b1, 1-b1, b2, lr, eps       m = b1*m + (1-b1)*g;  v = maximum(b2*v, |g|);
 *                                             p - (lr*m) / (v + eps)
 *   LION      k = b1, 1-b1, b2, 1-b2, decay, lr   c = b1*m + (1-b1)*g;  m = b2*m + (1-b2)*g;
 *                                             p = decay*p (WD);  p - lr*sign(c) */
#define PNN_OPTIM_RULES(X)                                                                     \
    X(PNN_OPT_SGD, sgd, 0)                                                                     \
    X(PNN_OPT_MOMENTUM, momentum, 1)                                                           \
    X(PNN_OPT_ADAM, adam, 2)                                                                   \
    X(PNN_OPT_RMSPROP, rmsprop, 1)                                                             \
    X(PNN_OPT_ADAGRAD, adagrad, 1)                                                             \
    X(PNN_OPT_ADADELTA, adadelta, 2)                                                           \
    X(PNN_OPT_ADAMAX, adamax, 2)                                                               \
    X(PNN_OPT_LION, lion, 1)

typedef enum pnN_optim_rule {
#define PNN_OPTIM_ENUM(E, N, S) E,
    PNN_OPTIM_RULES(PNN_OPTIM_ENUM)
#undef PNN_OPTIM_ENUM
        PNN_OPT_NRULES
} pnN_optim_rule;

/* Option bits of pnN_optim_params.flags. */
enum {
    PNN_OPT_WD = 1,       /* SGD, MOMENTUM: weight decay added to the gradient; LION: p *= decay */
    PNN_OPT_DAMP = 2,     /* MOMENTUM: dampening > 0 */
    PNN_OPT_NESTEROV = 4, /* MOMENTUM: Nesterov momentum */
};

enum { PNN_OPT_MAX_SLOTS = 2, PNN_OPT_NK = 8 };

/* One step of one rule: rule (pnN_optim_rule), flags, the coefficients k[] laid out as above. */
typedef struct pnN_optim_params {
    int rule, flags;
    double k[PNN_OPT_NK];
} pnN_optim_params;

/* Number of state slots rule reads and writes (0..PNN_OPT_MAX_SLOTS); -1 for an unknown rule. */
int pnN_optim_nslots(int rule);

/* Whether fused steps are used (default true). pnN_optim_set_fused(false) makes every
 * pnN_optim_update decline, so the rules compose their steps (tests and benchmarks compare the
 * two); returns the previous setting. Not thread-safe: set it before work starts. */
bool pnN_optim_set_fused(bool on);

/* One fused step of prm->rule as a single node with 1 + nslots outputs: out[0] = p',
 * out[1 + s] = slot s' (owned by the current scope), computed in one pass; slots[] holds the
 * rule's nslots state arrays. p, g and the slots must share one shape and one floating dtype
 * (f16, bf16, f32, f64), no transformation may be tracing and fusion must be on; otherwise
 * returns 1 and writes nothing ("not fusable": the caller composes the step from elementwise
 * ops, which stay differentiable). Returns 0 on success, -1 with an error (NULL input, bad
 * rule, out of memory). The node is not differentiable. */
int pnN_optim_update(pn_array *p, pn_array *g, pn_array *const *slots, const pnN_optim_params *prm,
                     pn_array **out);

/* Defines QUAL void NAME(int flags, const C *k, C p, C g, C *a, C *b, C *po) for rule R (an
 * integer constant): one element's step, a and b the slots (read, then overwritten with their
 * new values; unused ones untouched), *po the new parameter. Instantiated per compute type C
 * (float, double) and rule by the CPU and GPU kernels; SQRT is C's square root. The arithmetic
 * of the table above; maximum and sign as the elementwise kernels define them (NaN-propagating
 * maximum; sign(0) = 0). */
#define PNN_OPTIM_DEFINE_STEP(QUAL, NAME, R, C, SQRT)                                          \
    QUAL void NAME(int flags, const C *k, C p, C g, C *a, C *b, C *po)                         \
    {                                                                                          \
        (void)a, (void)b;                                                                      \
        switch (R) {                                                                           \
        case PNN_OPT_SGD:                                                                      \
            if (flags & PNN_OPT_WD) g = g + k[0] * p;                                          \
            *po = p - k[1] * g;                                                                \
            break;                                                                             \
        case PNN_OPT_MOMENTUM: {                                                               \
            if (flags & PNN_OPT_WD) g = g + k[0] * p;                                          \
            C v = k[2] * *a + ((flags & PNN_OPT_DAMP) ? k[3] * g : g);                         \
            *a = v;                                                                            \
            *po = p - k[1] * ((flags & PNN_OPT_NESTEROV) ? g + k[2] * v : v);                  \
            break;                                                                             \
        }                                                                                      \
        case PNN_OPT_ADAM: {                                                                   \
            C m = k[0] * *a + k[1] * g, v = k[2] * *b + k[3] * (g * g);                        \
            *a = m;                                                                            \
            *b = v;                                                                            \
            *po = p * k[5] - (k[6] * m) / (SQRT(v) * k[7] + k[4]);                             \
            break;                                                                             \
        }                                                                                      \
        case PNN_OPT_RMSPROP: {                                                                \
            C v = k[0] * *a + k[1] * (g * g);                                                  \
            *a = v;                                                                            \
            *po = p - (k[2] * g) / (SQRT(v) + k[3]);                                           \
            break;                                                                             \
        }                                                                                      \
        case PNN_OPT_ADAGRAD: {                                                                \
            C v = *a + g * g;                                                                  \
            *a = v;                                                                            \
            *po = p - (k[0] * g) / (SQRT(v) + k[1]);                                           \
            break;                                                                             \
        }                                                                                      \
        case PNN_OPT_ADADELTA: {                                                               \
            C v = k[0] * *a + k[1] * (g * g);                                                  \
            C d = (SQRT(*b + k[2]) / SQRT(v + k[2])) * g;                                      \
            *a = v;                                                                            \
            *b = k[0] * *b + k[1] * (d * d);                                                   \
            *po = p - k[3] * d;                                                                \
            break;                                                                             \
        }                                                                                      \
        case PNN_OPT_ADAMAX: {                                                                 \
            C m = k[0] * *a + k[1] * g, x = k[2] * *b, ag = g < 0 ? -g : g;                    \
            C v = x > ag || x != x ? x : ag;                                                   \
            *a = m;                                                                            \
            *b = v;                                                                            \
            *po = p - (k[3] * m) / (v + k[4]);                                                 \
            break;                                                                             \
        }                                                                                      \
        case PNN_OPT_LION: {                                                                   \
            C c = k[0] * *a + k[1] * g;                                                        \
            C sg = (C)(c > 0) - (C)(c < 0); /* branch-free: vectorizes */                      \
            sg = c != c ? c : sg;                                                              \
            C pd = (flags & PNN_OPT_WD) ? k[4] * p : p;                                        \
            *a = k[2] * *a + k[3] * g;                                                         \
            *po = pd - k[5] * sg;                                                              \
            break;                                                                             \
        }                                                                                      \
        default: break;                                                                        \
        }                                                                                      \
    }

#ifdef __cplusplus
}
#endif

#endif /* PONTE_OPS_OPTIM_H */
