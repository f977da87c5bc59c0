/* init.c — mlx.nn.init's initializers: uniform, normal, Glorot and He, with MLX's fan
 * computation (fan_in = shape[-1], fan_out = shape[0], times the receptive field). */
#include "core/core.h"

#include <math.h>

pn_array *pn_nn_init_uniform(const int64_t *shape, int ndim, pn_dtype dtype, double low,
                             double high, pn_array *key)
{
    pn_scope_push();
    pn_array *r = pn_random_uniform(pn_weak_float(low), pn_weak_float(high), shape, ndim, dtype, key);
    return pnC_scope_return(r);
}

pn_array *pn_nn_init_normal(const int64_t *shape, int ndim, pn_dtype dtype, double mean,
                            double std, pn_array *key)
{
    return pn_random_normal(shape, ndim, dtype, mean, std, key);
}

static int fans(const char *op, const int64_t *shape, int ndim, double *fan_in, double *fan_out)
{
    if (ndim < 2)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Glorot and He initialization need at least 2 dimensions, got %d.", op, ndim);
    double receptive = 1;
    for (int i = 1; i < ndim - 1; i++) receptive *= (double)shape[i];
    *fan_in = (double)shape[ndim - 1] * receptive;
    *fan_out = (double)shape[0] * receptive;
    return 0;
}

pn_array *pn_nn_init_glorot_uniform(const int64_t *shape, int ndim, pn_dtype dtype, double gain,
                                    pn_array *key)
{
    double fi = 0, fo = 0;
    if (fans("glorot_uniform", shape, ndim, &fi, &fo)) return NULL;
    double limit = gain * sqrt(6.0 / (fi + fo));
    return pn_nn_init_uniform(shape, ndim, dtype, -limit, limit, key);
}

pn_array *pn_nn_init_glorot_normal(const int64_t *shape, int ndim, pn_dtype dtype, double gain,
                                   pn_array *key)
{
    double fi = 0, fo = 0;
    if (fans("glorot_normal", shape, ndim, &fi, &fo)) return NULL;
    return pn_random_normal(shape, ndim, dtype, 0, gain * sqrt(2.0 / (fi + fo)), key);
}

pn_array *pn_nn_init_he_uniform(const int64_t *shape, int ndim, pn_dtype dtype, bool fan_out,
                                double gain, pn_array *key)
{
    double fi = 0, fo = 0;
    if (fans("he_uniform", shape, ndim, &fi, &fo)) return NULL;
    double limit = gain * sqrt(3.0 / (fan_out ? fo : fi));
    return pn_nn_init_uniform(shape, ndim, dtype, -limit, limit, key);
}

pn_array *pn_nn_init_he_normal(const int64_t *shape, int ndim, pn_dtype dtype, bool fan_out,
                               double gain, pn_array *key)
{
    double fi = 0, fo = 0;
    if (fans("he_normal", shape, ndim, &fi, &fo)) return NULL;
    return pn_random_normal(shape, ndim, dtype, 0, gain / sqrt(fan_out ? fo : fi), key);
}
