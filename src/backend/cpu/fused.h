/* fused.h — the program of a Compiled node (a fused chain of elementwise ops made by
 * mx.compile, src/transforms/compile.c) and its CPU kernel (fused.c). */
#ifndef PONTE_BACKEND_CPU_FUSED_H
#define PONTE_BACKEND_CPU_FUSED_H

#include "backend/cpu/elementwise.h"
#include "core/core.h"

#define PNF_MAX_OPS 32 /* ops in one fused group */
#define PNF_MAX_IN 16  /* inputs of one fused group */

enum { PNF_UNARY, PNF_BINARY, PNF_WHERE, PNF_ASTYPE };

/* One op of the program. Operand a < nin is the group's input a; a >= nin is the result of
 * op a - nin. */
typedef struct pnF_op {
    const pnC_primitive *prim; /* the unfused primitive (for derivatives and expansion) */
    pnK_ew_params p;           /* its params (unary and binary ops; unused otherwise) */
    uint32_t params_size;      /* the unfused node's params size */
    int8_t kind, nin;
    int16_t in[3];
    pn_dtype dtype; /* the result's dtype */
} pnF_op;

/* A Compiled node's params: ops in order, every result of the output's shape; the last op's
 * result is the node's output. Inputs have the output's shape or one element. Only the first
 * nops entries of ops are part of the params (the node's params_size says so). */
typedef struct pnF_program {
    int32_t nops, nin;
    pnF_op ops[PNF_MAX_OPS];
} pnF_program;

/* Bytes of a program of n ops. */
#define PNF_PROGRAM_SIZE(n) (offsetof(pnF_program, ops) + (size_t)(n) * sizeof(pnF_op))

/* Evaluation (pnC_eval_fn) of a Compiled node on the CPU: tiles of the output, each op through
 * the elementwise row kernels (results bit-identical to the unfused ops), threads over tiles. */
int pnK_fused_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

#endif /* PONTE_BACKEND_CPU_FUSED_H */
