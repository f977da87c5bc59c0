/* activations.c — mlx.nn's activation functions as compositions of elementwise ops (their
 * gradients come from the ops'). Each function runs in an internal scope so that only its
 * result survives. */
#include "core/core.h"

#include <math.h>

#define W(x) pn_weak_float(x)
/* Body of an activation: `ACT(expr)` evaluates expr over x inside a scope. */
#define ACT(expr)                                                                              \
    do {                                                                                       \
        if (!pnC_inputs_ok(__func__, 1, &x)) return NULL;                                      \
        pn_scope_push();                                                                       \
        return pnC_scope_return(expr);                                                         \
    } while (0)

pn_array *pn_nn_relu(pn_array *x) { ACT(pn_maximum(x, W(0))); }
pn_array *pn_nn_relu6(pn_array *x) { ACT(pn_minimum(pn_maximum(x, W(0)), W(6))); }
pn_array *pn_nn_relu2(pn_array *x) { ACT(pn_square(pn_maximum(x, W(0)))); }
pn_array *pn_nn_leaky_relu(pn_array *x, double slope) { ACT(pn_maximum(pn_multiply(W(slope), x), x)); }
pn_array *pn_nn_elu(pn_array *x, double alpha)
{
    ACT(pn_where(pn_greater(x, W(0)), x, pn_multiply(W(alpha), pn_expm1(x))));
}
pn_array *pn_nn_selu(pn_array *x)
{
    ACT(pn_multiply(W(1.0507009873554805),
                    pn_where(pn_greater(x, W(0)), x, pn_multiply(W(1.6732632423543772), pn_expm1(x)))));
}
pn_array *pn_nn_celu(pn_array *x, double alpha)
{
    ACT(pn_add(pn_maximum(x, W(0)),
               pn_multiply(W(alpha), pn_expm1(pn_divide(pn_minimum(x, W(0)), W(alpha))))));
}
pn_array *pn_nn_gelu(pn_array *x)
{
    ACT(pn_divide(pn_multiply(x, pn_add(W(1), pn_erf(pn_divide(x, W(M_SQRT2))))), W(2)));
}
pn_array *pn_nn_gelu_approx(pn_array *x)
{
    pn_array *inner;
    ACT((inner = pn_multiply(W(sqrt(2 / M_PI)), pn_add(x, pn_multiply(W(0.044715), pn_power(x, W(3))))),
         pn_multiply(pn_multiply(W(0.5), x), pn_add(W(1), pn_tanh(inner)))));
}
pn_array *pn_nn_gelu_fast_approx(pn_array *x) { ACT(pn_multiply(x, pn_sigmoid(pn_multiply(W(1.702), x)))); }
pn_array *pn_nn_silu(pn_array *x) { ACT(pn_multiply(x, pn_sigmoid(x))); }
pn_array *pn_nn_sigmoid(pn_array *x) { ACT(pn_sigmoid(x)); }
pn_array *pn_nn_softplus(pn_array *x) { ACT(pn_logaddexp(x, W(0))); }
pn_array *pn_nn_log_sigmoid(pn_array *x) { ACT(pn_negative(pn_logaddexp(pn_negative(x), W(0)))); }
pn_array *pn_nn_softsign(pn_array *x) { ACT(pn_divide(x, pn_add(W(1), pn_abs(x)))); }
pn_array *pn_nn_mish(pn_array *x) { ACT(pn_multiply(x, pn_tanh(pn_logaddexp(x, W(0))))); }
pn_array *pn_nn_hardswish(pn_array *x)
{
    ACT(pn_divide(pn_multiply(x, pn_minimum(pn_maximum(pn_add(x, W(3)), W(0)), W(6))), W(6)));
}
pn_array *pn_nn_hard_tanh(pn_array *x, double lo, double hi) { ACT(pn_minimum(pn_maximum(x, W(lo)), W(hi))); }
pn_array *pn_nn_tanh(pn_array *x) { ACT(pn_tanh(x)); }

pn_array *pn_nn_prelu(pn_array *x, pn_array *alpha)
{
    if (!pnC_inputs_ok("prelu", 1, &alpha)) return NULL;
    ACT(pn_add(pn_maximum(x, W(0)), pn_multiply(alpha, pn_minimum(x, W(0)))));
}

pn_array *pn_nn_glu(pn_array *x, int axis)
{
    if (!pnC_inputs_ok("glu", 1, &x)) return NULL;
    int ax = pnC_axis("glu", axis, x->ndim);
    if (ax < 0) return NULL;
    if (x->shape[ax] % 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[glu] Axis %d has odd size %lld.", axis,
                        (long long)x->shape[ax]);
    pn_scope_push();
    pn_array *halves[2];
    if (pn_split_sections(x, 2, ax, halves)) return pnC_scope_return(NULL);
    return pnC_scope_return(pn_multiply(halves[0], pn_sigmoid(halves[1])));
}

/* ── Activations of mlx.nn added for issue 3 ── */
pn_array *pn_nn_softshrink(pn_array *x, double lambd)
{
    ACT(pn_where(pn_greater(pn_abs(x), W(lambd)), pn_subtract(x, pn_multiply(pn_sign(x), W(lambd))), W(0)));
}
pn_array *pn_nn_hard_shrink(pn_array *x, double lambd) { ACT(pn_where(pn_greater(pn_abs(x), W(lambd)), x, W(0))); }
pn_array *pn_nn_step(pn_array *x, double threshold)
{
    ACT(pn_where(pn_greater(x, W(threshold)), pn_weak_int(1), pn_weak_int(0)));
}

pn_array *pn_nn_softmin(pn_array *x, int axis)
{
    if (!pnC_inputs_ok("softmin", 1, &x)) return NULL;
    int ax = pnC_axis("softmin", axis, x->ndim);
    if (ax < 0) return NULL;
    pn_scope_push();
    return pnC_scope_return(pn_softmax(pn_negative(x), &ax, 1, false));
}
