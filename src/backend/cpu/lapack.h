/* lapack.h — the CPU kernels of the decomposition primitives (SVD, Eigh, Eig, LUF, QRF of
 * src/ops/linalg_decomp.c) over OpenBLAS's LAPACK, and the Fortran prototypes of the LAPACK
 * routines they call (also used by the simulated cuSOLVER). Plain C, includable from C++. */
#ifndef PONTE_BACKEND_CPU_LAPACK_H
#define PONTE_BACKEND_CPU_LAPACK_H

#include "ponte.h"

#ifdef __cplusplus
extern "C" {
#endif

/* LAPACK's column-major routines (Fortran ABI: every argument by address; the hidden string
 * lengths of the character arguments are left out, as every C caller of LAPACK does). T is
 * float (prefix s) or double (prefix d). */
#define PNK_LAPACK_PROTOTYPES(T, P)                                                            \
    void P##gesdd_(const char *jobz, const int *m, const int *n, T *a, const int *lda, T *s,   \
                   T *u, const int *ldu, T *vt, const int *ldvt, T *work, const int *lwork,   \
                   int *iwork, int *info);                                                     \
    void P##syevd_(const char *jobz, const char *uplo, const int *n, T *a, const int *lda,     \
                   T *w, T *work, const int *lwork, int *iwork, const int *liwork, int *info); \
    void P##geev_(const char *jobvl, const char *jobvr, const int *n, T *a, const int *lda,    \
                  T *wr, T *wi, T *vl, const int *ldvl, T *vr, const int *ldvr, T *work,       \
                  const int *lwork, int *info);                                                \
    void P##getrf_(const int *m, const int *n, T *a, const int *lda, int *ipiv, int *info);    \
    void P##potrf_(const char *uplo, const int *n, T *a, const int *lda, int *info);           \
    void P##geqrf_(const int *m, const int *n, T *a, const int *lda, T *tau, T *work,          \
                   const int *lwork, int *info);                                               \
    void P##orgqr_(const int *m, const int *n, const int *k, T *a, const int *lda,             \
                   const T *tau, T *work, const int *lwork, int *info);
PNK_LAPACK_PROTOTYPES(float, s)
PNK_LAPACK_PROTOTYPES(double, d)
/* cgeev (complex64 geev): a, w, vl, vr and work hold interleaved (re, im) float pairs; rwork
 * is 2n floats. */
void cgeev_(const char *jobvl, const char *jobvr, const int *n, float *a, const int *lda, float *w,
            float *vl, const int *ldvl, float *vr, const int *ldvr, float *work, const int *lwork,
            float *rwork, int *info);

/* Params of SVD, Eigh and Eig (shared with the GPU glue, src/backend/cuda/solver.c):
 * vectors: compute U/Vt (SVD) or eigenvectors (Eigh, Eig) besides the values; upper: Eigh
 * reads the upper triangle (UPLO = "U") instead of the lower one. */
typedef struct pnK_decomp_params {
    bool vectors, upper;
} pnK_decomp_params;

struct pnC_node;

/* Eval of SVD: in[0] (..., m, n) float32/float64, any strides. vectors: out = U (..., m, m),
 * S (..., k), Vt (..., n, n) with k = min(m, n), U diag(S) Vt = a, S descending; else out = S
 * only. LAPACK gesdd. Fails (PN_ERR_BACKEND) when the iteration does not converge. */
int pnK_svd_eval(const struct pnC_node *node, pn_array *const *in, pn_array *const *out);
/* Eval of Eigh: in[0] (..., n, n), only the triangle params->upper names is read. out = w
 * (..., n) ascending [, V (..., n, n) with orthonormal eigenvectors as columns]. syevd. */
int pnK_eigh_eval(const struct pnC_node *node, pn_array *const *in, pn_array *const *out);
/* Eval of Eig: in[0] (..., n, n) float32, float64 or complex64. out = w (..., n) complex64
 * [, V (..., n, n) complex64, unit-norm right eigenvectors as columns], in LAPACK geev's order
 * (sgeev/dgeev, or cgeev for complex64). */
int pnK_eig_eval(const struct pnC_node *node, pn_array *const *in, pn_array *const *out);
/* Eval of LUF: in[0] (..., m, n). out = LU (..., m, n) (L below the diagonal with an implicit
 * unit diagonal, U on and above it), pivots (..., k) uint32 (row i was swapped with
 * pivots[i], 0-based, in order), row indices (..., m) uint32 with a = L[rows] @ U. getrf;
 * a singular matrix is not an error (U has a zero on its diagonal), as in MLX. */
int pnK_luf_eval(const struct pnC_node *node, pn_array *const *in, pn_array *const *out);

/* Eval of QRF: in[0] (..., m, n). out = Q (..., m, k) with orthonormal columns and R
 * (..., k, n) upper triangular, k = min(m, n), a = Q R: LAPACK geqrf + orgqr, so the signs
 * are LAPACK's (R's diagonal may be negative), as numpy's and MLX's. */
int pnK_qr_eval(const struct pnC_node *node, pn_array *const *in, pn_array *const *out);

/* Which mlx.core.linalg function a SolveTriangular node serves (its error message names it). */
enum { PNK_SOLVE_TRIANGULAR, PNK_TRI_INV, PNK_CHOLESKY_INV, PNK_INV, PNK_SOLVE };

/* Params of SolveTriangular (src/ops/linalg_solve.c; shared with the GPU glue): the triangle
 * of a read (upper, else lower), whether its diagonal is taken as ones (unit), and fn above. */
typedef struct pnK_trsm_params {
    bool upper, unit;
    uint8_t fn;
} pnK_trsm_params;

/* The name of a pnK_trsm_params fn ("inv", ...). */
const char *pnK_trsm_fn_name(int fn);

/* Eval of SolveTriangular: in[0] a (..., n, n), in[1] b (..., n, k), same batch shape and
 * dtype (float32/float64), any strides; out = x with T x = b for T the triangle of a the
 * params name. A zero on T's diagonal (not unit) fails with PN_ERR_BACKEND "... singular". */
int pnK_trsm_eval(const struct pnC_node *node, pn_array *const *in, pn_array *const *out);
/* Eval of Cholesky: in[0] (..., n, n) float32/float64; out L (lower, zeros above) with
 * L L^T = the symmetric matrix of in's lower triangle. potrf; where that matrix is not
 * positive definite, out holds the partial factor potrf leaves (as MLX), not an error. */
int pnK_cholesky_eval(const struct pnC_node *node, pn_array *const *in, pn_array *const *out);

/* From LAPACK's 1-based pivot sequence ipiv (k entries) of an m-row matrix: 0-based pivots
 * and the row indices r with a[i] = (L U)[r[i]] (the swaps applied to the identity in
 * reverse order). */
void pnK_lu_pivots(const int *ipiv, int64_t k, int64_t m, uint32_t *pivots, uint32_t *rows);

#ifdef __cplusplus
}
#endif

#endif /* PONTE_BACKEND_CPU_LAPACK_H */
