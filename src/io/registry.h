/* registry.h — every primitive descriptor of the library by name (registry.c), so that an
 * exported function's graph (export.c) can name its primitives in a file and find them again
 * when it is imported. The descriptors below are defined in the ops files that own them. */
#ifndef PONTE_IO_REGISTRY_H
#define PONTE_IO_REGISTRY_H

#include "core/core.h"
#include "backend/cpu/elementwise.h"

/* The descriptors (defined next to their constructors in src/ops/; pnC_alias_prim in core.h,
 * pnT_tracer_prim in transforms/transforms.h). */
extern const pnC_primitive unary_prims[PNK_U_COUNT], binary_prims[PNK_B_COUNT], divmod_prim,
    where_prim, stop_gradient_prim;                                      /* elementwise.c */
extern const pnC_primitive matmul_prim, addmm_prim, diagonal_prim;       /* linalg.c */
extern const pnC_primitive copy_prim, astype_prim, full_prim, arange_prim, linspace_prim,
    eye_prim, tri_prim, trimask_prim;                                    /* creation.c */
extern const pnC_primitive random_bits_prim, sqrt_svd_prim;              /* random.c */
extern const pnC_primitive reduce_prim, argreduce_prim, lse_prim, softmax_prim,
    extreme_vjp_prim; /* reduce.c */
extern const pnC_primitive svd_prim, eigh_prim, eig_prim, luf_prim, qrf_prim; /* linalg_decomp.c */
extern const pnC_primitive solve_triangular_prim, cholesky_prim;       /* linalg_solve.c */
extern const pnC_primitive to_fp8_prim;                               /* ops/fp8.c */
extern const pnC_primitive quantize_prim, dequantize_prim, qmm_prim;     /* quantized.c */
extern const pnC_primitive conv_prim;                                    /* conv.c */
extern const pnC_primitive take_prim, take_scatter_prim, gather_prim, gather_axis_prim,
    scatter_prim, scatter_axis_prim;                                     /* indexing.c */
extern const pnC_primitive optim_update_prim;                            /* optim.c */
extern const pnC_primitive layer_norm_prim, rms_norm_prim, layer_norm_vjp_prim,
    rms_norm_vjp_prim; /* norm.c */
extern const pnC_primitive reshape_prim, transpose_prim, broadcast_prim, slice_prim,
    slice_update_prim, concat_prim, split_prim, pad_prim, as_strided_prim; /* shape.c */
extern const pnC_primitive sort_prim, argsort_prim, partition_prim, argpartition_prim; /* sort.c */
extern const pnC_primitive fft_prim;                                     /* fft.c */
extern const pnC_primitive depends_prim;                                 /* depends.c */
extern const pnC_primitive scan_prim;                                    /* scan.c */
extern const pnC_primitive sdpa_prim, sdpa_vjp_prim;                     /* attention.c */

/* The primitive named name, or NULL when no registered primitive has that name. */
const pnC_primitive *pnR_find(const char *name);
/* Whether a node of primitive p may have params_size bytes of params, nin inputs and nout
 * outputs (the shapes every constructor of p makes). NULL p or an unregistered one: false.
 * On false, writes what p expects into why (n bytes) when why is non-NULL. */
bool pnR_node_ok(const pnC_primitive *p, size_t params_size, int nin, int nout, char *why,
                 size_t n);
/* The number of registered primitives, and the i-th one (0 <= i < count), for tests. */
int pnR_count(void);
const pnC_primitive *pnR_at(int i);

#endif /* PONTE_IO_REGISTRY_H */
