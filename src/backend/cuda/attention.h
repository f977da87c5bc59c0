/* attention.h — the launchers of the fused attention kernels (attention.cu), called by their C
 * glue (attention.c). Plain C. */
#ifndef PONTE_BACKEND_CUDA_ATTENTION_H
#define PONTE_BACKEND_CUDA_ATTENTION_H

#include "backend/cuda/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One attention call as the kernels see it: shapes, params (backend/cpu/attention.h), and
 * device pointers with element strides of their (b, h, row) dims (the last dim is dense).
 * mask: bool or an additive mask of `dtype`, strides per (b, h, i, j), 0 where broadcast. */
typedef struct pnG_sdpa_args {
    int64_t B, Hq, Hkv, Lq, Lk, D, Dv;
    double scale, fill;
    int causal, mask;
    pn_dtype dtype; /* q, k, v, out, dout, dq, dk, dv; lse and the scratch D in float32 (float64) */
    const void *q, *k, *v, *mask_data, *o, *lse, *dout;
    const void *dlse; /* backward: NULL, or lse's cotangent (B, Hq, Lq) dense, lse's dtype */
    int64_t qs[3], ks[3], vs[3], os[3], dos[3], ms[4];
} pnG_sdpa_args;

/* Forward: out (B, Hq, Lq, Dv) dense in dtype, lse (B, Hq, Lq) dense. Backward: dq, dk, dv
 * dense like q, k, v, with dscratch 3 * B * Hq * Lq compute-type elements of device scratch
 * (the rows' rowsum(dout * out), softmax max and 1 / sum). Any head dims. Queued on stream;
 * 0, -1 with an error, or PNG_UNSUPPORTED (a dtype that is not floating). With out (dq) NULL
 * only that check is made: a->dtype is read. */
int pnG_sdpa_forward(const pnG_sdpa_args *a, void *out, void *lse, int stream);
int pnG_sdpa_backward(const pnG_sdpa_args *a, void *dq, void *dk, void *dv, void *dscratch, int stream);

/* How many kernels ran on the tensor cores (float16 / bfloat16, 16 query rows or more, head
 * dims multiples of 16 up to 128 for the forward, up to 256 for the backward's dq and dk / dv
 * kernels, each counted; PONTE_SDPA_FAST=0 turns it off) since the process started: a test
 * and benchmark hook. */
int64_t pnG_sdpa_tensor_core_count(void);
/* How many forwards took the split-key decoding kernels (fewer than 16 query rows against
 * 128 keys or more) since the process started: a test and benchmark hook. */
int64_t pnG_sdpa_decode_count(void);
/* Turns the fast paths (the tensor-core kernels and the split-key decoding forward) on or off
 * (the default: on unless PONTE_SDPA_FAST=0); returns the previous setting. Off, every case
 * runs on the CUDA-core tile kernels. For benchmarks and tests. */
bool pnG_sdpa_set_fast_paths(bool on);
/* Caps the shared memory per block the attention launchers plan with at bytes (never below
 * the default 48 KiB; 0: the device's opt-in maximum, the default); returns the previous cap.
 * A test hook: 101376 (99 KiB) makes any device choose tiles as an sm_86 / sm_89 would. */
size_t pnG_sdpa_set_smem_limit(size_t bytes);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_ATTENTION_H */
