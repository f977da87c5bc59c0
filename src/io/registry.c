/* registry.c — the table of every primitive by name, with the params size and input/output
 * counts its constructors make, for exporting and importing function graphs (export.c). A new
 * primitive is exportable once it has a line here (docs/adding-an-op.md). */
#include "io/registry.h"

#include "backend/cpu/attention.h"
#include "backend/cpu/conv.h"
#include "backend/cpu/fft.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/indexing.h"
#include "backend/cpu/lapack.h"
#include "backend/cpu/norm.h"
#include "backend/cpu/quantized.h"
#include "backend/cpu/reduce.h"
#include "backend/cpu/sort.h"
#include "ops/creation.h"
#include "ops/optim.h"
#include "transforms/transforms.h"

#include <stdio.h>
#include <string.h>

/* Mirrors of the params structs that are private to their ops files (same members, so the
 * same size). Exporting checks every node against this table, so a struct that drifts from
 * its mirror makes the export tests fail instead of writing unreadable files. */
typedef struct { int offset, axis1, axis2; } diag_mirror;              /* linalg.c */
typedef struct { int width; } bits_mirror;                             /* random.c */
typedef struct { int infer; } reshape_mirror;                          /* shape.c */
typedef struct { int perm[PNC_MAX_NDIM]; } transpose_mirror;
typedef struct { int64_t start[PNC_MAX_NDIM], step[PNC_MAX_NDIM]; } slice_mirror;
typedef struct { int axis; } concat_mirror;
typedef struct { int axis; int64_t start[]; } split_mirror;            /* + one int64 per output */
typedef struct { int64_t low[PNC_MAX_NDIM]; } pad_mirror;
typedef struct { int64_t strides[PNC_MAX_NDIM]; int64_t offset; } as_strided_mirror;

typedef struct {
    const pnC_primitive *p;
    size_t params;  /* bytes of params */
    size_t per_out; /* more bytes per output (Split) */
    int8_t nin;     /* inputs; -1: any number */
    int8_t nout;    /* outputs; -1: any number (at least one) */
} entry;

#define EW sizeof(pnK_ew_params)
#define U(E, NM, PRIM, RULE, CPX) {&unary_prims[PNK_U_##E], EW, 0, 1, 1},
#define B(E, NM, PRIM, RULE, CPX) {&binary_prims[PNK_B_##E], EW, 0, 2, 1},

static const entry table[] = {
    PNK_UNARY_OPS(U) PNK_UNARY_EXTRA(U)
    PNK_BINARY_OPS(B) PNK_BINARY_EXTRA(B)
    {&divmod_prim, EW, 0, 2, 2},
    {&where_prim, 0, 0, 3, 1},
    {&stop_gradient_prim, 0, 0, 1, 1},
    {&matmul_prim, sizeof(pnK_gemm_params), 0, 2, 1},
    {&addmm_prim, sizeof(pnK_gemm_params), 0, 3, 1},
    {&diagonal_prim, sizeof(diag_mirror), 0, 1, 1},
    {&copy_prim, 0, 0, 1, 1},
    {&astype_prim, 0, 0, 1, 1},
    {&full_prim, 0, 0, -1, 1}, /* values, [the array whose shape they take] */
    {&arange_prim, sizeof(sequence_params), 0, 0, 1},
    {&linspace_prim, sizeof(sequence_params), 0, 0, 1},
    {&eye_prim, sizeof(eye_params), 0, 0, 1},
    {&tri_prim, sizeof(eye_params), 0, 0, 1},
    {&trimask_prim, sizeof(trimask_params), 0, 1, 1},
    {&random_bits_prim, sizeof(bits_mirror), 0, 1, 1},
    {&sqrt_svd_prim, 0, 0, 1, 1},
    {&reduce_prim, sizeof(pnK_reduce_params), 0, 1, 1},
    {&argreduce_prim, sizeof(pnK_argreduce_params), 0, 1, 1},
    {&lse_prim, sizeof(pnK_reduce_params), 0, 1, 1},
    {&extreme_vjp_prim, sizeof(pnK_reduce_params), 0, 3, 1},
    {&softmax_prim, sizeof(pnK_softmax_params), 0, 1, 1},
    {&svd_prim, sizeof(pnK_decomp_params), 0, 1, -1},
    {&eigh_prim, sizeof(pnK_decomp_params), 0, 1, -1},
    {&eig_prim, sizeof(pnK_decomp_params), 0, 1, -1},
    {&luf_prim, 0, 0, 1, 3},
    {&qrf_prim, 0, 0, 1, 2},
    {&sdpa_prim, sizeof(pnK_sdpa_params), 0, -1, 2},
    {&sdpa_vjp_prim, sizeof(pnK_sdpa_params), 0, -1, 3},
    {&solve_triangular_prim, sizeof(pnK_trsm_params), 0, 2, 1},
    {&cholesky_prim, 0, 0, 1, 1},
    {&to_fp8_prim, 0, 0, 1, 1},
    {&quantize_prim, sizeof(pnK_quant_params), 0, -1, -1}, /* modes with and without biases */
    {&dequantize_prim, sizeof(pnK_quant_params), 0, -1, 1},
    {&qmm_prim, sizeof(pnK_quant_params), 0, -1, 1},
    {&conv_prim, sizeof(pnK_conv_params), 0, 2, 1},
    {&take_prim, sizeof(pnK_index_params), 0, 2, 1},
    {&take_scatter_prim, sizeof(pnK_index_params), 0, 3, 1},
    {&gather_prim, sizeof(pnK_index_params), 0, -1, 1},
    {&gather_axis_prim, sizeof(pnK_index_params), 0, 2, 1},
    {&scatter_prim, sizeof(pnK_index_params), 0, -1, 1},
    {&scatter_axis_prim, sizeof(pnK_index_params), 0, 3, 1},
    {&optim_update_prim, sizeof(pnN_optim_params), 0, -1, -1},
    {&layer_norm_prim, sizeof(pnK_norm_params), 0, -1, 1}, /* x, [weight], [bias] */
    {&rms_norm_prim, sizeof(pnK_norm_params), 0, -1, 1},
    {&layer_norm_vjp_prim, sizeof(pnK_norm_params), 0, -1, -1}, /* x, [weight], g */
    {&rms_norm_vjp_prim, sizeof(pnK_norm_params), 0, -1, -1},
    {&reshape_prim, sizeof(reshape_mirror), 0, 1, 1},
    {&transpose_prim, sizeof(transpose_mirror), 0, 1, 1},
    {&broadcast_prim, 0, 0, -1, 1}, /* the array, [the array whose shape it takes] */
    {&slice_prim, sizeof(slice_mirror), 0, 1, 1},
    {&slice_update_prim, sizeof(slice_mirror), 0, 2, 1},
    {&concat_prim, sizeof(concat_mirror), 0, -1, 1},
    {&split_prim, sizeof(split_mirror), sizeof(int64_t), 1, -1},
    {&pad_prim, sizeof(pad_mirror), 0, 2, 1},
    {&as_strided_prim, sizeof(as_strided_mirror), 0, 1, 1},
    {&sort_prim, sizeof(pnK_sort_params), 0, 1, 1},
    {&argsort_prim, sizeof(pnK_sort_params), 0, 1, 1},
    {&partition_prim, sizeof(pnK_sort_params), 0, 1, 1},
    {&argpartition_prim, sizeof(pnK_sort_params), 0, 1, 1},
    {&fft_prim, sizeof(pnK_fft_params), 0, 1, 1},
    {&depends_prim, 0, 0, -1, 1},
    {&scan_prim, sizeof(pnK_scan_params), 0, 1, 1},
    {&pnC_alias_prim, 0, 0, 1, 1},
    {&pnT_tracer_prim, 0, 0, 1, 1},
};
#undef U
#undef B
#undef EW

#define NTABLE ((int)(sizeof table / sizeof table[0]))

static const entry *entry_of(const pnC_primitive *p)
{
    for (int i = 0; p && i < NTABLE; i++)
        if (table[i].p == p) return &table[i];
    return NULL;
}

const pnC_primitive *pnR_find(const char *name)
{
    for (int i = 0; name && i < NTABLE; i++)
        if (strcmp(table[i].p->name, name) == 0) return table[i].p;
    return NULL;
}

bool pnR_node_ok(const pnC_primitive *p, size_t params_size, int nin, int nout, char *why,
                 size_t n)
{
    const entry *e = entry_of(p);
    if (!e) {
        if (why) snprintf(why, n, "an unregistered primitive");
        return false;
    }
    size_t want = e->params + (nout > 0 ? (size_t)nout : 0) * e->per_out;
    bool ok = params_size == want && (e->nin < 0 ? nin >= 0 : nin == e->nin) &&
              (e->nout < 0 ? nout >= 1 : nout == e->nout);
    if (!ok && why) {
        char in[16], out[16];
        snprintf(in, sizeof in, e->nin < 0 ? "any number of" : "%d", e->nin);
        snprintf(out, sizeof out, e->nout < 0 ? "one or more" : "%d", e->nout);
        snprintf(why, n, "%zu bytes of params, %s inputs and %s outputs (got %zu bytes, %d inputs, "
                 "%d outputs)", want, in, out, params_size, nin, nout);
    }
    return ok;
}

int pnR_count(void) { return NTABLE; }

const pnC_primitive *pnR_at(int i) { return i >= 0 && i < NTABLE ? table[i].p : NULL; }
