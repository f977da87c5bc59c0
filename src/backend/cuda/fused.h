/* fused.h — the GPU kernel of mx.compile's Compiled node (a fused chain of elementwise ops,
 * program: pnF_program in backend/cpu/fused.h): one launch of a kernel generated for the
 * program and compiled by NVRTC, or of a kernel that interprets any program (fused.cu); the C
 * glue (fused.c) turns a node into the launch descriptor below. Plain C. */
#ifndef PONTE_BACKEND_CUDA_FUSED_H
#define PONTE_BACKEND_CUDA_FUSED_H

#include "backend/cuda/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PNG_FUSED_MAX_OPS 32 /* = PNF_MAX_OPS */
#define PNG_FUSED_MAX_IN 16  /* = PNF_MAX_IN */

/* Op kinds (= PNF_UNARY, PNF_BINARY, PNF_WHERE, PNF_ASTYPE). */
enum { PNG_FUSED_UNARY, PNG_FUSED_BINARY, PNG_FUSED_WHERE, PNG_FUSED_ASTYPE };

/* One op of a launch: kind (PNF_UNARY, PNF_BINARY, PNF_WHERE, PNF_ASTYPE), op (the
 * pnK_unary_op / pnK_binary_op), t the dtype its kernel is keyed by (the operand's; where:
 * x's), dst the result's dtype; operand in[i] < nin is input in[i], else the value in slot
 * in[i] - nin; the result goes to slot out. p0..p2, flag: the node's pnK_ew_params. */
typedef struct pnG_fused_op {
    int16_t kind, op, t, dst;
    int16_t in[3], out;
    int32_t flag;
    double p0, p1, p2;
} pnG_fused_op;

/* A fused launch: out (n elements of dtype out_dtype, dense) from inputs in[k] (dtype
 * in_dtype[k], dense with n elements, or one element broadcast when scalar[k], or — generated
 * kernels only — strided[k]: element strides[k] over the output's row-major shape[ndim], a
 * broadcast dimension's stride 0); ops in order, the last one's result is stored. nslots:
 * slots the ops use. All device memory. */
typedef struct pnG_fused_args {
    int64_t n;
    void *out;
    int32_t out_dtype, nin, nops, nslots;
    const void *in[PNG_FUSED_MAX_IN];
    int32_t in_dtype[PNG_FUSED_MAX_IN];
    bool scalar[PNG_FUSED_MAX_IN], strided[PNG_FUSED_MAX_IN];
    int32_t ndim;
    int64_t shape[PNG_MAX_NDIM];
    int64_t strides[PNG_FUSED_MAX_IN][PNG_MAX_NDIM];
    pnG_fused_op ops[PNG_FUSED_MAX_OPS];
    int stream; /* Ponte stream index */
} pnG_fused_args;

/* pnG_fused_launch's answer when a has strided inputs and no generated kernel can run: the
 * caller copies them dense and launches again (the interpreter). */
#define PNG_FUSED_NEEDS_DENSE 2

/* Launches a's kernel (fused.cu): the kernel generated for its program when NVRTC is there
 * (compiled on the program's first launch, then cached for the process), else the
 * interpreter (PNG_FUSED_NEEDS_DENSE when an input is strided). With run false only answers
 * whether every op and dtype of a has a case in the kernels (the values that fuse: bool,
 * float16, bfloat16, float32, float64 and the integers up to 32 bits; the unary and binary
 * ops the GPU elementwise tables define for them, where, astype from them to bool or a
 * floating dtype). Returns 0, -1 with an error, or PNG_UNSUPPORTED (nothing launched). */
int pnG_fused_launch(const pnG_fused_args *a, bool run);

/* The CUDA source of the kernel generated for a (pointers, n and stream unused; entry point
 * pn_fused, one parameter: pnG_fused_jit_params in fused_ops.cuh), or NULL with an error when
 * a has a case the kernels do not take. Release with free(). */
char *pnG_fused_source(const pnG_fused_args *a);

/* How many Compiled nodes ran as one fused GPU launch since the process started, and how many
 * of those through a generated kernel (tests and benchmarks check which path ran). */
int64_t pnG_fused_count(void);
int64_t pnG_fused_generated_count(void);

/* Why generated kernels are not used (NVRTC missing, or the first error of one that would
 * not compile or load: the interpreter runs from then on), or NULL while nothing failed. The
 * simulated GPU tries them only with PONTE_SIM_JIT=1 (it builds them with the host compiler). */
const char *pnG_fused_jit_error(void);
/* Whether the next launch will try a generated kernel (the caller may then pass strided
 * inputs as they are). */
bool pnG_fused_jit_ready(void);

/* ── the C glue (fused.c) ── */
struct pnC_node;
struct pnF_program;
/* Evaluation (pnC_eval_fn) of a Compiled node on the GPU: one launch of the interpreter
 * (strided inputs are copied dense first; an input's buffer may be donated to the output);
 * PNG_UNSUPPORTED, before touching any buffer, for a program outside its cases. */
int pnG_fused_eval(const struct pnC_node *node, pn_array *const *in, pn_array *const *out);
/* Whether pnG_fused_eval runs program pg whose inputs have dtypes in_dtypes[0..pg->nin)
 * (compile decides from it which tape the GPU replays). */
bool pnG_fused_supported(const struct pnF_program *pg, const pn_dtype *in_dtypes);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_FUSED_H */
