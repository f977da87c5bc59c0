/* indexing.h — the GPU index engine (take, take_along_axis, put_along_axis, gather, scatter):
 * the plan the C glue (indexing.c) builds from a node, as the CPU engine does, and the
 * launcher that runs it (indexing.cu). Plain C: shared by the glue and the kernels. */
#ifndef PONTE_BACKEND_CUDA_INDEXING_H
#define PONTE_BACKEND_CUDA_INDEXING_H

#include "backend/cuda/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most index arrays of one plan (more: PNG_UNSUPPORTED). */
#define PNG_IDX_MAXIDX 6

/* One gather or scatter. The index space (ishape, row-major, dims merged) has one position per
 * index tuple; each position moves a slice (sshape) between the linear side (the gather's
 * output or the scatter's updates; operand 0) and the target (the gather's input or the
 * scatter's output; operand 1), at the target offset the index values select. Operand 2 + k
 * is index array k. Strides are in elements; tgt's offsets are element offsets into the
 * row-contiguous output for scatters. */
typedef struct pnG_index_plan {
    int ni, ns, nidx;
    int64_t ishape[PNG_MAX_NDIM];
    int64_t istr[2 + PNG_IDX_MAXIDX][PNG_MAX_NDIM];
    int64_t sshape[PNG_MAX_NDIM];
    int64_t sstr[2][PNG_MAX_NDIM];
    const void *idata[PNG_IDX_MAXIDX];
    int idtype[PNG_IDX_MAXIDX];      /* pn_dtype of index array k (an integer type) */
    int64_t extent[PNG_IDX_MAXIDX];  /* target extent along the indexed axis */
    int64_t window[PNG_IDX_MAXIDX];  /* slice extent along that axis */
    int64_t tstride[PNG_IDX_MAXIDX]; /* target stride of that axis */
} pnG_index_plan;

/* Runs plan p: a gather (scatter false: lin[...] = tgt[resolved]) or a scatter combining
 * updates into tgt with mode (pn_scatter_mode: set keeps the update of the last position in
 * row-major order of the index space, as the CPU; the others accumulate with atomics).
 * Index values wrap once when negative; then gathers clamp, scatters drop out-of-range
 * slices. tgt_size: elements of the scatter target (for set's winner table). Queued on
 * stream. Returns 0, PNG_UNSUPPORTED (dtype) or -1 with an error. */
int pnG_index_run(const pnG_index_plan *p, pn_dtype dtype, bool scatter, int mode, void *lin,
                  void *tgt, int64_t tgt_size, int stream);
/* How many gathers so far moved 16-byte vectors (slices of whole vectors, aligned), for tests. */
int64_t pnG_index_vectorized_count(void);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_INDEXING_H */
