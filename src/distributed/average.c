/* average.c — the data-parallel gradient average (mlx.nn.average_gradients) for C programs:
 * gradients of one dtype travel concatenated, one all_sum per run of arrays reaching
 * all_reduce_size bytes, then split back and divided by the group's size. */
#include "distributed/distributed.h"

#include <stdlib.h>

/* Every grads[i] averaged over g's processes into out[i] (owned by the current scope): one
 * all_sum per run of consecutive arrays totalling at least all_reduce_size bytes when all
 * share a dtype (<= 0, or mixed dtypes: one all_sum per array). On one process out[i] is a
 * new handle on grads[i]. Every process must pass the same shapes and dtypes in the same
 * order. out may be grads itself. Returns 0, or -1 with an error (out all NULL). */
int pn_nn_average_gradients(pn_array *const *grads, int n, pn_dist_group *g,
                            int64_t all_reduce_size, pn_array **out)
{
    if (n < 0 || (n > 0 && (!grads || !out)))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[average_gradients] Bad array count %d.", n);
    if (!pnC_inputs_ok("average_gradients", n, grads)) {
        for (int i = 0; i < n; i++) out[i] = NULL;
        return -1;
    }
    int size = pn_dist_group_size(g);
    pn_array **res = calloc((size_t)n + 1, sizeof *res); /* out may alias grads */
    if (!res) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[average_gradients] Out of memory.");
    pn_scope_push();
    bool mixed = false;
    for (int i = 1; i < n; i++) mixed |= grads[i]->dtype != grads[0]->dtype;
    int rc = 0;
    for (int i = 0, j; i < n && rc == 0; i = j) {
        j = i + 1;
        if (size == 1) {
            res[i] = pnC_alias(grads[i]);
            rc = res[i] ? 0 : -1;
            continue;
        }
        int64_t bytes = grads[i]->size * (int64_t)pn_dtype_size(grads[i]->dtype);
        while (!mixed && all_reduce_size > 0 && bytes < all_reduce_size && j < n)
            bytes += grads[j]->size * (int64_t)pn_dtype_size(grads[j]->dtype), j++;
        if (j == i + 1) {
            res[i] = pn_divide(pn_dist_all_sum(grads[i], g), pn_weak_int(size));
            rc = res[i] ? 0 : -1;
            continue;
        }
        pn_array *flat[j - i];
        for (int k = i; k < j; k++) flat[k - i] = pn_reshape(grads[k], (int64_t[]){-1}, 1);
        pn_array *avg = pn_divide(pn_dist_all_sum(pn_concatenate(flat, j - i, 0), g), pn_weak_int(size));
        int64_t at = 0;
        for (int k = i; k < j && avg; k++) {
            int64_t stop = at + grads[k]->size;
            res[k] = pn_reshape(pn_slice(avg, &at, &stop, NULL, 1), grads[k]->shape, grads[k]->ndim);
            at = stop;
        }
        for (int k = i; k < j; k++) rc |= res[k] ? 0 : -1;
    }
    if (rc) pn_scope_pop();
    else pn_scope_pop_keep(res, n);
    for (int i = 0; i < n; i++) out[i] = rc ? NULL : res[i];
    free(res);
    return rc ? -1 : 0;
}
