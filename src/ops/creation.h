/* creation.h — the params of the creation primitives whose kernels write element values
 * (src/ops/creation.c), shared with their GPU evals (src/backend/cuda/creation.c). */
#ifndef PONTE_OPS_CREATION_H
#define PONTE_OPS_CREATION_H

#include "core/core.h"

/* Arange and Linspace. */
typedef struct {
    double start, step, stop;
    bool linspace; /* step = (stop - start) / (size - 1), the last element is stop */
} sequence_params;

/* Eye and Tri. */
typedef struct {
    int64_t k;
    bool tri; /* ones at and below diagonal k; else ones on diagonal k only */
} eye_params;

/* TriMask (tril and triu). */
typedef struct {
    int64_t k;
    bool upper; /* triu: keep j >= i + k; tril: keep j <= i + k */
} trimask_params;

#endif /* PONTE_OPS_CREATION_H */
