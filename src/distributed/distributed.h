/* distributed.h — the internal interface between the public process-group API (group.c: groups,
 * the lazy collective primitives) and a communication backend (mpi.c, ring.c over host memory;
 * nccl.c over device memory for GPU nodes). A backend is one table of functions over opaque
 * communicators; group.c never sees MPI or NCCL. */
#ifndef PONTE_DISTRIBUTED_H
#define PONTE_DISTRIBUTED_H

#include "core/core.h"

/* The element-wise reductions of all_reduce. */
typedef enum { PND_SUM, PND_MAX, PND_MIN } pnD_reduce;

/* One backend. Every function returning int gives 0, or -1 after recording an error (pnC_fail
 * / pn_set_error, PN_ERR_BACKEND for communication failures). Buffers are row-contiguous host
 * memory of n elements of dtype (all_gather's out holds size * n, reduce_scatter's in holds
 * size * n). Collectives must be called in the same order by every process of comm. */
typedef struct pnD_backend {
    const char *name;
    /* Whether the library loads (no communication happens). */
    bool (*available)(void);
    /* Whether this process was started by the backend's launcher (mpirun). */
    bool (*launched)(void);
    /* Initializes the library once per process and gives the world communicator, or NULL
     * with an error. */
    void *(*init)(void);
    int (*rank)(void *comm);
    int (*size)(void *comm);
    /* The communicator of the processes of comm with the same color, ordered by key. */
    void *(*split)(void *comm, int color, int key);
    int (*all_reduce)(void *comm, const void *in, void *out, int64_t n, pn_dtype dt, pnD_reduce op);
    int (*all_gather)(void *comm, const void *in, void *out, int64_t n, pn_dtype dt);
    /* out (n elements) = this rank's n-element block of the element-wise sum of in. */
    int (*reduce_scatter_sum)(void *comm, const void *in, void *out, int64_t n, pn_dtype dt);
    int (*send)(void *comm, const void *buf, int64_t n, pn_dtype dt, int dst);
    int (*recv)(void *comm, void *buf, int64_t n, pn_dtype dt, int src);
    /* Checks that every process of comm passes the same n and dtype (a collective itself):
     * a mismatch is PN_ERR_INVALID_ARGUMENT on every process instead of a hang or garbage. */
    int (*check_same)(void *comm, const char *op, int64_t n, pn_dtype dt);
    /* Frees a communicator made by split (never the world). */
    void (*free)(void *comm);
} pnD_backend;

/* The MPI backend (mpi.c): Open MPI loaded with dlopen at first use. */
extern const pnD_backend pnD_mpi;
/* The ring backend (ring.c): TCP sockets between the processes, started by a launcher that
 * sets torchrun's (or Slurm's), MLX's hostfile or MLX's NCCL environment variables. */
extern const pnD_backend pnD_ring;

/* NCCL (nccl.c), for the nodes evaluated on a GPU stream: the same table over device buffers,
 * queued on the evaluating node's stream (pnC_eval_stream); only rank, size, the five
 * collectives and free are set. Its communicators come from pnD_nccl_new. */
extern const pnD_backend pnD_nccl;
/* Whether NCCL can be used: a usable GPU, libnccl loaded (at the first call), and not
 * PONTE_NCCL=0. When not, *why (may be NULL) names the reason. */
bool pnD_nccl_available(const char **why);
/* Whether pnD_nccl carries a collective of dtype dt: reduce < 0 moves data (all_gather, send,
 * recv: every dtype, as bytes), else the reduction reduce (a pnD_reduce) of all_reduce or
 * reduce_scatter_sum: every dtype but int16 / uint16 (NCCL has no 16-bit integers),
 * complex64 for the sum only, bfloat16 from NCCL 2.10. */
bool pnD_nccl_handles(pn_dtype dt, int reduce);
/* The NCCL communicator of the processes of host_comm (a communicator of host backend be),
 * bootstrapped over it: a collective over host_comm, whose members all return the same code.
 * 0: *out is the communicator. 1: NCCL cannot serve this group, and every member knows it
 * (some member has no NCCL or no GPU, or two members share a GPU): *out NULL, the reason
 * recorded as a PN_ERR_BACKEND error; the group keeps its host path. -1: an error (NCCL's
 * own failure). */
int pnD_nccl_new(const pnD_backend *be, void *host_comm, void **out);
/* How many collectives of GPU nodes ran through NCCL (nccl true) or through host memory
 * (group.c; a test hook). */
int64_t pnD_gpu_path_count(bool nccl);

/* acc[i] = acc[i] op x[i] for n elements of dt (combine.c): sum, max, min (NaN wins; bool: or,
 * or, and; complex64 ordered by real then imaginary part). */
void pnD_combine(void *acc, const void *x, int64_t n, pn_dtype dt, pnD_reduce op);

#endif /* PONTE_DISTRIBUTED_H */
