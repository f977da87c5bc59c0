/* solver.h — launchers of the GPU decompositions and solvers, called by the C glue of SVD, Eigh,
 * Eig, LUF, QRF, Cholesky and SolveTriangular
 * (solver.c) and defined in solver.cu over cuSOLVER's dense API (and Eig's over its 64-bit
 * API) (the simulated cuSOLVER of
 * sim/cusolver_sim.h under PONTE_GPU_SIM). Matrices are column-major, as cuSOLVER's; a batch
 * is nmat matrices one after another. All pointers are device memory; each launcher queues
 * its work on a Ponte stream index and returns 0 or -1 with an error. */
#ifndef PONTE_BACKEND_CUDA_SOLVER_H
#define PONTE_BACKEND_CUDA_SOLVER_H

#include "backend/cuda/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* SVD a = U diag(s) V^T of each column-major rows x cols matrix of a (float32/float64,
 * overwritten) with Jacobi sweeps (gesvdj): s (nmat, min(rows, cols)) descending; with
 * vectors, u (nmat, rows, rows) and v (nmat, cols, cols) column-major (V itself, not V^T).
 * Fails with PN_ERR_BACKEND naming the first matrix that did not converge (this waits for
 * the stream). */
int pnG_solver_svd(pn_dtype t, int64_t nmat, int rows, int cols, void *a, void *s, void *u,
                   void *v, bool vectors, int stream);

/* Eigenvalues w (nmat, n) ascending of each symmetric column-major n x n matrix of a, reading
 * its lower (lower) or upper triangle (syevd); with vectors, a is overwritten by the
 * orthonormal eigenvectors (columns). Fails like pnG_solver_svd. */
int pnG_solver_eigh(pn_dtype t, int64_t nmat, int n, void *a, void *w, bool vectors, bool lower,
                    int stream);

/* Eigenvalues and, when vecs is not NULL, right eigenvectors of each general column-major
 * n x n matrix of a (float32/float64, overwritten) through the 64-bit API's geev: vals (nmat, n)
 * and vecs (nmat, n, n) row-major (vecs[i][r][j] is element r of eigenvector j), both complex64
 * as interleaved floats, in LAPACK's order and normalization (unit norm, largest component
 * real). Fails like pnG_solver_svd. */
int pnG_solver_eig(pn_dtype t, int64_t nmat, int n, void *a, void *vals, void *vecs, int stream);

/* Eigenvalues and, when vr is not NULL, right eigenvectors of each general column-major n x n
 * complex64 matrix of a (interleaved floats, overwritten) through the 64-bit API's geev in
 * complex arithmetic (A, W, VR and the compute type all CUDA_C_32F): vals (nmat, n) complex64
 * as geev writes W, vr (nmat, n, n) column-major complex64 as geev writes VR (column j is
 * eigenvector j, unit norm, largest component real). Fails like pnG_solver_svd. */
int pnG_solver_eig_complex(int64_t nmat, int n, void *a, void *vals, void *vr, int stream);

/* LU factorization with partial pivoting of each column-major m x n matrix of a, in place
 * (getrf; batches of at least 2 square matrices of at most 32 rows: one cuBLAS getrfBatched
 * call), and from its pivots: pivots (nmat, min(m, n)) uint32 0-based and the row indices
 * rows (nmat, m) uint32 of pnK_lu_pivots (backend/cpu/lapack.h). A singular matrix is not an
 * error. */
int pnG_solver_lu(pn_dtype t, int64_t nmat, int m, int n, void *a, uint32_t *pivots,
                  uint32_t *rows, int stream);

/* QR factorization of each column-major m x n matrix of a (float32/float64; geqrf, then
 * orgqr in place): r (nmat, k, n) row-major R, zeros below its diagonal, k = min(m, n); a
 * then holds Q in the first k columns of each matrix (column-major, leading dimension m,
 * matrices still m * n elements apart). LAPACK's signs. */
int pnG_solver_qr(pn_dtype t, int64_t nmat, int m, int n, void *a, void *r, int stream);

/* Cholesky factor of each column-major n x n matrix of a in place (potrf on its upper
 * triangle, the row-major lower one), the other triangle zeroed: read row-major, a then holds
 * L with L L^T = A. A matrix that is not positive definite keeps potrf's partial factor (not an
 * error, as on the CPU). */
int pnG_solver_cholesky(pn_dtype t, int64_t nmat, int n, void *a, int stream);

/* x = T^-1 x for each row-major n x n matrix of a (its upper or lower triangle, a unit diagonal
 * when unit) and row-major n x k matrix of x, in place (cuBLAS trsm; batches of at least 2
 * triangles of at most 32 rows: one trsmBatched call). Unless unit, the
 * diagonals are checked for zeros first (this waits for the stream): *singular is then the
 * first such matrix and nothing is solved; else *singular = -1. */
int pnG_solver_trsm(pn_dtype t, int64_t nmat, int n, int k, bool upper, bool unit, const void *a,
                    void *x, int64_t *singular, int stream);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CUDA_SOLVER_H */
