/* reduce.h — CPU kernels of the reduction family (reduce.c): Reduce (sum, prod, max, min,
 * all, any over a set of axes), ArgReduce, Scan, Softmax and LogSumExp; the params structs
 * that the primitives in src/ops/reduce.c and src/ops/scan.c hand them; and two small
 * helpers those primitives' derivative and batching rules share (pnO_). */
#ifndef PONTE_BACKEND_CPU_REDUCE_H
#define PONTE_BACKEND_CPU_REDUCE_H

#include "core/core.h"

/* The combining operation of a Reduce or Scan node. */
typedef enum pnK_reduce_op {
    PNK_SUM = 0,
    PNK_PROD,
    PNK_MAX,
    PNK_MIN,
    PNK_AND, /* all */
    PNK_OR,  /* any */
    PNK_LOGADDEXP, /* scans only */
    PNK_NUM_REDUCE_OPS
} pnK_reduce_op;

/* Reduce: op over the sorted, normalized axes[0..naxes-1] of the input; the output drops
 * them (or keeps them with extent 1 when keepdims). Sums are multiplied by scale (1 for
 * sum, 1/count for mean). Also used by LogSumExp (op and scale ignored). */
typedef struct pnK_reduce_params {
    int op;
    int naxes;
    int axes[PNC_MAX_NDIM];
    bool keepdims;
    double scale;
} pnK_reduce_params;

/* ArgReduce: index (uint32) of the first max (op PNK_MAX) or min (PNK_MIN) along axis, or
 * over the row-major flattened input when axis is PN_ALL_AXES. */
typedef struct pnK_argreduce_params {
    int op;
    int axis;
    bool keepdims;
} pnK_argreduce_params;

/* Scan: op accumulated along axis (PN_ALL_AXES: the row-major flattened input, the output
 * being 1-d); reverse runs from the end; exclusive (inclusive == false) shifts by one. */
typedef struct pnK_scan_params {
    int op;
    int axis;
    bool reverse;
    bool inclusive;
} pnK_scan_params;

/* Softmax over the last naxes axes of the input (a float array); precise is informational:
 * half types always accumulate in float32. */
typedef struct pnK_softmax_params {
    int naxes;
    bool precise;
} pnK_softmax_params;

/* Eval functions (pnC_eval_fn) for the primitives. Inputs may be strided views; outputs get
 * fresh row-contiguous buffers. Each returns 0 or -1 with an error (out of memory). */
int pnK_reduce_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnK_argreduce_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnK_scan_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnK_softmax_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
/* ExtremeVjp (the vjp of a max or min Reduce; pnK_reduce_params of that Reduce): inputs x,
 * the reduction's result and its cotangent (any strides, x's float dtype); the output,
 * dense in x's shape, holds cot / (number of ties) where x equals its window's result, 0
 * elsewhere. */
int pnK_extreme_vjp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
/* LogSumExp takes pnK_reduce_params (op ignored); its input is a float array. */
int pnK_logsumexp_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* The dtype of a sum or product of dtype t, as MLX: bool and signed integers of up to 32
 * bits give int32, unsigned ones uint32, 64-bit integers keep theirs, floats keep theirs. */
pn_dtype pnK_sum_dtype(pn_dtype t);

/* For the derivative rules of src/ops/reduce.c and scan.c, which open a scope, build r and
 * end with `return pnO_keep_result(r, slot);`: closes the scope keeping r in *slot and
 * returns 0, or returns -1 (slot NULL) when r is NULL. */
static inline int pnO_keep_result(pn_array *r, pn_array **slot)
{
    *slot = r;
    if (!r) {
        pn_scope_pop();
        return -1;
    }
    pn_scope_pop_keep(slot, 1);
    return 0;
}

#endif /* PONTE_BACKEND_CPU_REDUCE_H */
