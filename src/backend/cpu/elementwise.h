/* elementwise.h — the elementwise op tables shared by the op constructors
 * (src/ops/elementwise.c) and the CPU kernels (src/backend/cpu/elementwise.c): one X-macro
 * list per arity naming every op with its MLX dtype rule, the params every elementwise node
 * carries, and the kernel entry points (one generic machinery for all of them). */
#ifndef PONTE_BACKEND_CPU_ELEMENTWISE_H
#define PONTE_BACKEND_CPU_ELEMENTWISE_H

#include "backend/cpu/ew_ops.h"
#include "core/core.h"

/* Whether the CPU kernels implement op for inputs of dtype. */
bool pnK_unary_supported(int op, pn_dtype dtype);
bool pnK_binary_supported(int op, pn_dtype dtype);

/* Evaluation functions (pnC_eval_fn) of the elementwise primitives. Inputs may have any
 * strides and shapes that broadcast to the output's; they share one dtype (where: the
 * condition is bool and x, y share one dtype). An input's buffer is donated to the output
 * when nothing else holds it.
 *   unary:  in[0] -> out[0]            (params: pnK_ew_params, op a pnK_unary_op)
 *   binary: in[0], in[1] -> out[0]     (params: pnK_ew_params, op a pnK_binary_op)
 *   divmod: in[0], in[1] -> out[0] = floor_divide, out[1] = remainder
 *   where:  in[0] (bool), in[1], in[2] -> out[0] = in[0] ? in[1] : in[2] */
int pnK_unary_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnK_binary_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnK_divmod_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);
int pnK_where_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* The row kernel behind an elementwise node, for fused evaluation (backend/cpu/fused.c):
 * kind 0 the unary op `op`, 1 the binary op `op`, both for inputs of dtype t; 2 where for x/y
 * of dtype t. NULL when there is none. fn(n, p, s, prm): p[0] the output, p[1..] the inputs,
 * s their strides in elements (0: a broadcast scalar). */
typedef void (*pnK_row_fn)(int64_t n, char *const *p, const int64_t *s, const pnK_ew_params *prm);
pnK_row_fn pnK_ew_row(int kind, int op, pn_dtype t);

/* The vector-math array function y[i] = f(x[i]) (i < n, float32) that the float32, float16 and
 * bfloat16 rows of unary op `op` compute through (vmath.h), or NULL when op has none. */
void (*pnK_ew_vector_fn(int op))(const float *x, float *y, int64_t n);

#endif /* PONTE_BACKEND_CPU_ELEMENTWISE_H */
