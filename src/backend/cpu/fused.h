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
 * result is the node's output. Inputs have shapes that broadcast to the output's (kernels read
 * a smaller one through a broadcast view). Only the first
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

/* ── Generated kernels (fused_jit.c) ──
 * A program (with its inputs' dtypes, bit i of bcast set when input i is one broadcast
 * element) becomes C source built by the system C compiler ($PONTE_CC, else the compiler that
 * built the library) into a kernel computing output elements [lo, lo + n):
 *   fn(lo, n, in, out, prm, vfn, cvt) — in[i] input i's data (dense, or its one element),
 *   out the output's data, prm[k] op k's params, vfn[k] op k's vector function
 *   (pnK_ew_vector_fn; NULL for other ops), cvt a pnC_convert taking int dtypes.
 * Its results are the tile interpreter's bits. */
typedef void (*pnK_fused_vector_fn)(const float *x, float *y, int64_t n);
typedef void (*pnK_fused_convert_fn)(const void *src, int st, void *dst, int dt, int64_t n);
typedef void (*pnK_fused_kernel_fn)(int64_t lo, int64_t n, char *const *in, char *out,
                                    const pnK_ew_params *prm, const pnK_fused_vector_fn *vfn,
                                    pnK_fused_convert_fn cvt);

/* The generated kernel of pg for an output of n elements, built on its first request (the
 * caller waits; the disk cache spares later processes), or NULL: interpret. NULL when n is
 * under the size it pays at (pnK_fused_jit_set_min_size, PONTE_FUSED_JIT_MIN_SIZE, default
 * 16384), with PONTE_FUSED_JIT=0, for programs it does not take (complex64, float64 erfinv), and
 * after a build failed (pnK_fused_jit_error says why; no error is left on the thread). */
pnK_fused_kernel_fn pnK_fused_generated(const pnF_program *pg, const pn_dtype *dt, uint32_t bcast, int64_t n);
/* Why generated kernels are not used (the first build failure), or NULL. */
const char *pnK_fused_jit_error(void);
/* Sets the smallest output generated kernels are used for (-1: the environment's). */
void pnK_fused_jit_set_min_size(int64_t n);
/* Compiled nodes evaluated by generated kernels so far (for the tests). */
int64_t pnK_fused_generated_count(void);

/* The headers generated C includes, embedded at build time (generated/jit_headers.c). */
extern const int pnK_jit_header_count;
extern const char *const pnK_jit_header_names[];
extern const char *const pnK_jit_header_texts[];

#endif /* PONTE_BACKEND_CPU_FUSED_H */
