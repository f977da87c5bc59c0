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

/* ── Initializers of mlx.nn.init added for issue 3: constant, identity, sparse, orthogonal ── */

pn_array *pn_nn_init_constant(const int64_t *shape, int ndim, pn_dtype dtype, double value)
{
    pn_scope_push();
    return pnC_scope_return(pn_full(shape, ndim, pn_weak_float(value), dtype));
}

static bool two_dims(const char *op, int ndim, const char *what)
{
    if (ndim == 2) return true;
    pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] %s must be 2-dimensional, got %d dimensions.", op, what, ndim);
    return false;
}

pn_array *pn_nn_init_identity(const int64_t *shape, int ndim, pn_dtype dtype)
{
    if (!two_dims("init_identity", ndim, "The shape")) return NULL;
    if (shape[0] != shape[1])
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[init_identity] The shape must be square, got (%lld, %lld).",
                        (long long)shape[0], (long long)shape[1]);
    return pn_eye(shape[0], shape[0], 0, dtype);
}

/* The i-th of two keys split from key (NULL stays NULL: the global state draws both). */
static pn_array *subkey(pn_array *key, int i)
{
    return key ? pn_take(pn_random_split(key, 2), pn_scalar_int(i, PN_INT32), 0) : NULL;
}

pn_array *pn_nn_init_sparse(const int64_t *shape, int ndim, pn_dtype dtype, double sparsity,
                            double mean, double std, pn_array *key)
{
    if (!two_dims("init_sparse", ndim, "The shape")) return NULL;
    pn_scope_push();
    int64_t num_zeros = (int64_t)ceil(sparsity * (double)shape[1]);
    pn_array *u = pn_random_uniform(pn_weak_float(0), pn_weak_float(1), shape, 2, PN_FLOAT32, subkey(key, 0));
    /* rank of each element within its row in a random order: the first num_zeros become 0 */
    pn_array *rank = pn_argsort(pn_argsort(u, 1), 1);
    pn_array *a = pn_random_normal(shape, 2, dtype, mean, std, subkey(key, 1));
    pn_array *zero = pn_zeros_like(a);
    return pnC_scope_return(pn_where(pn_less(rank, pn_weak_int(num_zeros)), zero, a));
}

pn_array *pn_nn_init_orthogonal(const int64_t *shape, int ndim, pn_dtype dtype, double gain,
                                pn_array *key)
{
    if (!two_dims("init_orthogonal", ndim, "The shape")) return NULL;
    pn_scope_push();
    int64_t rows = shape[0], cols = shape[1], n = rows > cols ? rows : cols;
    /* drawn and factored in float32 (QR takes float32/float64 only), as MLX, then cast */
    pn_dtype ft = dtype == PN_FLOAT64 ? PN_FLOAT64 : PN_FLOAT32;
    pn_array *rmat = pn_random_normal((int64_t[]){n, n}, 2, ft, 0, 1, key), *q = NULL, *r = NULL;
    if (!rmat || pn_linalg_qr(rmat, &q, &r)) return pnC_scope_return(NULL);
    q = pn_multiply(q, pn_sign(pn_diag(r, 0)));
    q = pn_slice(q, (int64_t[]){0, 0}, (int64_t[]){rows, cols}, NULL, 2);
    q = pn_multiply(q, pn_weak_float(gain));
    return pnC_scope_return(ft == dtype ? q : pn_astype(q, dtype));
}
