/* sort.c — op constructors of sort, argsort, partition, argpartition and topk (MLX's checks
 * and shapes) and their derivatives: the values of a sort or partition are a permutation of
 * the input, so cotangents go back through the same permutation (scatter-add along the axis)
 * and tangents come forward through it (take_along_axis). Kernels: backend/cpu/sort.c. */
#include "ops/indexing.h"

#include "backend/cpu/sort.h"
#include "backend/cuda/eval.h"

extern const pnC_primitive sort_prim, argsort_prim, partition_prim, argpartition_prim;

static const pnC_primitive *sort_prim_for(bool arg, bool partition)
{
    return partition ? (arg ? &argpartition_prim : &partition_prim)
                     : (arg ? &argsort_prim : &sort_prim);
}

/* The node behind every public op. kth is a partition's position (negative counts from the
 * end); topk >= 0 asks for the top-k window [N - k, N) of the partition at N - k. */
static pn_array *sort_op(const char *op, pn_array *a, int axis, bool arg, bool partition,
                         int kth, int topk)
{
    if (!pnC_inputs_ok(op, 1, &a)) return NULL;
    if (axis == PN_ALL_AXES) {
        pn_scope_push();
        int64_t flat = a->size;
        return pnC_scope_return(
            sort_op(op, pn_reshape(a, &flat, 1), 0, arg, partition, kth, topk));
    }
    int ax = pnC_axis(op, axis, a->ndim);
    if (ax < 0) return NULL;
    int64_t n = a->shape[ax];
    char s[256];
    pnK_sort_params p;
    memset(&p, 0, sizeof p);
    p.axis = ax;
    p.arg = arg;
    p.partition = partition;
    if (topk >= 0 || partition) {
        if (topk > n || topk < -1)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Received invalid k=%d along axis %d for array with shape %s.",
                            op, topk, axis, pnC_shape_str(a->shape, a->ndim, s, sizeof s));
        int64_t k = topk >= 0 ? n - topk : (kth < 0 ? kth + n : kth);
        if (topk < 0 && (k < 0 || k >= n))
            return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                            "[%s] Received invalid kth %d along axis %d for array with shape %s.",
                            op, kth, axis, pnC_shape_str(a->shape, a->ndim, s, sizeof s));
        p.kth = k < n ? k : 0; /* topk with k = 0 outputs nothing */
        p.lo = topk >= 0 ? k : 0;
    }
    if ((arg || partition) && n > (int64_t)UINT32_MAX)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[%s] An axis of %lld elements is too long for uint32 indices.", op,
                        (long long)n);
    int64_t shape[PNC_MAX_NDIM];
    memcpy(shape, a->shape, sizeof(int64_t) * (size_t)a->ndim);
    shape[ax] = n - p.lo;
    return pnC_make(sort_prim_for(arg, partition), &p, sizeof p, 1, &a,
                    arg ? PN_UINT32 : a->dtype, shape, a->ndim);
}

/* Sorted copy of a along axis (PN_ALL_AXES: of the flattened array), ascending, NaNs last. */
pn_array *pn_sort(pn_array *a, int axis) { return sort_op("sort", a, axis, false, false, 0, -1); }

/* uint32 indices that sort a along axis; stable (equal elements keep their order). */
pn_array *pn_argsort(pn_array *a, int axis)
{
    return sort_op("argsort", a, axis, true, false, 0, -1);
}

/* A copy of a with the kth element (negative: from the end) of each row in its sorted place,
 * smaller ones before it and larger ones after (in no particular order). */
pn_array *pn_partition(pn_array *a, int kth, int axis)
{
    return sort_op("partition", a, axis, false, true, kth, -1);
}

/* The uint32 indices that partition a as pn_partition does. */
pn_array *pn_argpartition(pn_array *a, int kth, int axis)
{
    return sort_op("argpartition", a, axis, true, true, kth, -1);
}

/* The k largest elements along axis (0 <= k <= N), in place of the axis; as MLX, the last k
 * positions of the partition at N - k: the smallest of them first, the rest unordered. */
pn_array *pn_topk(pn_array *a, int k, int axis)
{
    if (k < 0) {
        char s[256];
        if (!pnC_inputs_ok("topk", 1, &a)) return NULL;
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[topk] Received invalid k=%d along axis %d for array with shape %s.", k,
                        axis, pnC_shape_str(a->shape, a->ndim, s, sizeof s));
    }
    return sort_op("topk", a, axis, false, true, 0, k);
}

/* ───────────────────────────── derivatives ───────────────────────────── */

/* The source indices of a value node's output: the same arrangement in index form. */
static pn_array *source_indices(const pnC_node *node, pn_array *a)
{
    pnK_sort_params q = *PNC_PARAMS(node, pnK_sort_params);
    q.arg = true;
    int64_t shape[PNC_MAX_NDIM];
    memcpy(shape, a->shape, sizeof(int64_t) * (size_t)a->ndim);
    shape[q.axis] -= q.lo;
    return pnC_make(sort_prim_for(true, q.partition), &q, sizeof q, 1, &a, PN_UINT32, shape,
                    a->ndim);
}

static int sort_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_sort_params *p = PNC_PARAMS(node, pnK_sort_params);
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (p->arg || !cot[0]) return 0; /* indices are piecewise constant: zero gradient */
    bool ok = true;
    pn_scope_push();
    pn_array *idx = source_indices(node, in[0]);
    for (int i = 0; i < nargs; i++) {
        if (argnums[i] != 0) continue;
        grads[i] = pnO_scatter_add_axis(pn_zeros_like(in[0]), idx, cot[0], p->axis);
        ok &= grads[i] != NULL;
    }
    pn_scope_pop_keep(grads, nargs);
    if (ok) return 0;
    for (int i = 0; i < nargs; i++) pn_release(grads[i]), grads[i] = NULL;
    return -1;
}

static int sort_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    const pnK_sort_params *p = PNC_PARAMS(node, pnK_sort_params);
    out_tan[0] = NULL;
    if (p->arg || !tan[0]) return 0;
    pn_scope_push();
    out_tan[0] = pn_take_along_axis(tan[0], source_indices(node, in[0]), p->axis);
    pn_scope_pop_keep(out_tan, 1);
    return out_tan[0] ? 0 : -1;
}

const pnC_primitive sort_prim = {
    .name = "Sort",
    .eval = {[PN_CPU] = pnK_sort_eval, [PN_GPU] = PNG_EVAL(pnG_sort_eval)},
    .vjp = sort_vjp,
    .jvp = sort_jvp,
};
const pnC_primitive argsort_prim = {
    .name = "ArgSort",
    .eval = {[PN_CPU] = pnK_sort_eval, [PN_GPU] = PNG_EVAL(pnG_sort_eval)},
    .vjp = sort_vjp,
    .jvp = sort_jvp,
};
const pnC_primitive partition_prim = {
    .name = "Partition",
    .eval = {[PN_CPU] = pnK_sort_eval, [PN_GPU] = PNG_EVAL(pnG_sort_eval)},
    .vjp = sort_vjp,
    .jvp = sort_jvp,
};
const pnC_primitive argpartition_prim = {
    .name = "ArgPartition",
    .eval = {[PN_CPU] = pnK_sort_eval, [PN_GPU] = PNG_EVAL(pnG_sort_eval)},
    .vjp = sort_vjp,
    .jvp = sort_jvp,
};
