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

/* Batching rule of the sort family: the mapped axis first, the sorted axis one further. */
static int sort_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes, pn_array **out,
                     int *out_axes)
{
    if (in_axes[0] < 0) return pnC_batch_rebuild(node, in, out, out_axes);
    pnK_sort_params q = *PNC_PARAMS(node, pnK_sort_params);
    q.axis++;
    pn_scope_push();
    pn_array *x = pnC_batch_front(in[0], in_axes[0], 0);
    int64_t s[PNC_MAX_NDIM];
    int nd = x ? pnC_batch_shape(x->shape[0], node->out_shapes[0], node->out_ndims[0], s) : -1;
    out[0] = nd < 0 ? NULL : pnC_make(node->prim, &q, sizeof q, 1, &x, node->out_dtypes[0], s, nd);
    out_axes[0] = 0;
    pn_scope_pop_keep(out, 1);
    return out[0] ? 0 : -1;
}

const pnC_primitive sort_prim = {
    .name = "Sort",
    .eval = {[PN_CPU] = pnK_sort_eval, [PN_GPU] = PNG_EVAL(pnG_sort_eval)},
    .vjp = sort_vjp,
    .jvp = sort_jvp,
    .vmap = sort_vmap,
};
const pnC_primitive argsort_prim = {
    .name = "ArgSort",
    .eval = {[PN_CPU] = pnK_sort_eval, [PN_GPU] = PNG_EVAL(pnG_sort_eval)},
    .vjp = sort_vjp,
    .jvp = sort_jvp,
    .vmap = sort_vmap,
};
const pnC_primitive partition_prim = {
    .name = "Partition",
    .eval = {[PN_CPU] = pnK_sort_eval, [PN_GPU] = PNG_EVAL(pnG_sort_eval)},
    .vjp = sort_vjp,
    .jvp = sort_jvp,
    .vmap = sort_vmap,
};
const pnC_primitive argpartition_prim = {
    .name = "ArgPartition",
    .eval = {[PN_CPU] = pnK_sort_eval, [PN_GPU] = PNG_EVAL(pnG_sort_eval)},
    .vjp = sort_vjp,
    .jvp = sort_jvp,
    .vmap = sort_vmap,
};

/* ───────────────────────────── unique ───────────────────────────── */

static pn_array *u32(uint32_t v) { return pn_scalar_int((int64_t)v, PN_UINT32); }

/* x[lo:hi] of the 1-d x. NULL-safe. */
static pn_array *range1(pn_array *x, int64_t lo, int64_t hi)
{
    return x ? pn_slice(x, &lo, &hi, NULL, 1) : NULL;
}

/* The 1-d x (length n) cut or padded with pad (a scalar of x's dtype) to length size. */
static pn_array *resize1(pn_array *x, int64_t n, int64_t size, pn_array *pad)
{
    if (size <= n) return range1(x, 0, size);
    int64_t extra = size - n;
    pn_array *parts[2] = {x, pn_full(&extra, 1, pad, pn_array_dtype(x))};
    return parts[1] ? pn_concatenate(parts, 2, 0) : NULL;
}

/* "(d0,d1,...)" as MLX prints shapes in messages. */
static const char *shape_str(const pn_array *a, char *buf, size_t n)
{
    return pnC_shape_str(pn_shape(a), pn_ndim(a), buf, n);
}


/* See ponte.h. Sort the flattened a (argsort), start a group where a sorted element differs
 * from the one before (so NaNs are each their own group and -0.0 joins 0.0), number the groups
 * by a cumulative sum, then scatter: the group of each position (inverse), the smallest
 * position of each group (index, min-scatter) and the group sizes (counts, add-scatter). The
 * values are a gathered at index, so their gradient goes to the first occurrences. */
int pn_unique(pn_array *a, int64_t size, pn_array *fill_value, pn_array **out)
{
    for (int k = 0; k < 4; k++) out[k] = NULL;
    if (!pnC_inputs_ok("unique", 1, &a)) return -1;
    if (size < 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[unique] Received negative size %lld.", (long long)size), -1;
    char buf[256];
    if (fill_value && pn_size(fill_value) != 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[unique] Fill value must have one element, but got shape %s.",
                        shape_str(fill_value, buf, sizeof buf)),
               -1;
    int64_t n = pn_size(a);
    if (n == 0 && size > 0 && !fill_value)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[unique] A fill value is required for an empty input with a non-zero size."),
               -1;
    pn_dtype t = pn_array_dtype(a);
    pn_scope_push();
    pn_array *fill = fill_value ? pn_astype(pn_reshape(fill_value, NULL, 0), t) : NULL;
    pn_array *r[4];
    if (n == 0) {
        r[0] = fill ? pn_full(&size, 1, fill, t) : pn_zeros(&size, 1, t); /* size 0 without fill */
        r[1] = pn_zeros(&size, 1, PN_UINT32);
        r[2] = pn_zeros(pn_shape(a), pn_ndim(a), PN_UINT32);
        r[3] = pn_zeros(&size, 1, PN_INT32);
    } else {
        pn_array *flat = pn_reshape(a, &n, 1);
        pn_array *perm = pn_argsort(flat, 0);
        pn_array *sorted = pn_take(flat, perm, 0);
        pn_array *start = pn_ones((int64_t[]){1}, 1, PN_BOOL);
        if (n > 1) {
            pn_array *parts[2] = {start, pn_not_equal(range1(sorted, 1, n), range1(sorted, 0, n - 1))};
            start = pn_concatenate(parts, 2, 0);
        }
        pn_array *gid = pn_subtract(pn_cumsum(pn_astype(start, PN_INT32), 0, false, true),
                                    pn_scalar_int(1, PN_INT32));
        pn_array *nuniq = pn_add(pn_reshape(range1(gid, n - 1, n), NULL, 0), pn_scalar_int(1, PN_INT32));
        int64_t col[2] = {n, 1};
        pn_array *inv = pn_put_along_axis(pn_zeros(&n, 1, PN_INT32), perm, gid, 0);
        inv = pn_minimum(inv, pn_scalar_int(size > 0 ? size - 1 : 0, PN_INT32));
        pn_array *counts = pn_scatter(pn_zeros(&n, 1, PN_INT32), &gid, 1, pn_ones(col, 2, PN_INT32),
                                      (int[]){0}, PN_SCATTER_ADD);
        pn_array *first = pn_scatter(pn_full(&n, 1, pn_scalar_int(n, PN_UINT32), PN_UINT32), &gid, 1,
                                     pn_reshape(perm, col, 2), (int[]){0}, PN_SCATTER_MIN);
        pn_array *valid = pn_less(pn_arange(0, (double)size, 1, PN_INT32), nuniq);
        pn_array *index = pn_where(valid, resize1(first, n, size, u32(0)),
                                   pn_reshape(range1(first, 0, 1), NULL, 0));
        pn_array *values = pn_take(flat, index, 0);
        r[0] = fill ? pn_where(valid, values, fill) : values;
        r[1] = index;
        r[2] = inv ? pn_reshape(pn_astype(inv, PN_UINT32), pn_shape(a), pn_ndim(a)) : NULL;
        r[3] = resize1(counts, n, size, pn_scalar_int(0, PN_INT32));
    }
    bool ok = r[0] && r[1] && r[2] && r[3];
    pn_scope_pop_keep(r, ok ? 4 : 0);
    if (!ok) return -1;
    for (int k = 0; k < 4; k++) out[k] = r[k];
    return 0;
}
