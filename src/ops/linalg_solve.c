/* linalg_solve.c — mlx.core.linalg's solvers over two primitives: SolveTriangular (BLAS trsm
 * on the CPU, cuBLAS trsm on the GPU) and Cholesky (LAPACK / cuSOLVER potrf). inv and solve
 * go through LUF (linalg_decomp.c) and two triangular solves; tri_inv and cholesky_inv are
 * triangular solves against the identity. A zero on the diagonal of a triangle being solved
 * (an exactly singular matrix) is an error at evaluation, as MLX's inv and solve raise. All
 * batch over the leading axes; float16/bfloat16 are computed in float32. */
#include "backend/cpu/lapack.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

#include <stdio.h>
#include <string.h>

/* ───────────────────────────── helpers ───────────────────────────── */

/* Checks that a is a (batch of) square floating matrices. Returns n or -1. */
static int64_t square_matrix(const char *op, pn_array *a)
{
    int nd = pn_ndim(a);
    if (nd < 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::%s] Arrays must have at least two "
                        "dimensions, got %d.", op, nd), -1;
    if (!pnC_is_float(pn_array_dtype(a)))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::%s] Arrays must have a floating point "
                        "type, got %s.", op, pn_dtype_name(pn_array_dtype(a))), -1;
    int64_t n = pn_shape(a)[nd - 1];
    if (pn_shape(a)[nd - 2] != n)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::%s] Inputs must be square matrices, got "
                        "shape (..., %lld, %lld).", op, (long long)pn_shape(a)[nd - 2], (long long)n), -1;
    return n;
}

/* The dtype the kernels compute in: float32 or float64. */
static pn_dtype compute_type(pn_dtype t) { return t == PN_FLOAT64 ? PN_FLOAT64 : PN_FLOAT32; }

static pn_array *mT(pn_array *x) { return pn_swapaxes(x, -1, -2); }

/* The triangle of x that a solve with these params reads: lower or upper, without the
 * diagonal when it is a unit one. */
static pn_array *triangle(pn_array *x, bool upper, bool unit)
{
    return upper ? pn_triu(x, unit ? 1 : 0) : pn_tril(x, unit ? -1 : 0);
}

/* a (..., n, n) and b (..., n, k) broadcast to one batch shape. Returns 0 or -1. */
static int broadcast_batch(const char *op, pn_array **a, pn_array **b)
{
    int na = pn_ndim(*a) - 2, nb = pn_ndim(*b) - 2, nd = (na > nb ? na : nb) + 2;
    int64_t batch[PNC_MAX_NDIM], sa[PNC_MAX_NDIM], sb[PNC_MAX_NDIM];
    if (pnC_broadcast_shapes(op, pn_shape(*a), na, pn_shape(*b), nb, batch) < 0) return -1;
    memcpy(sa, batch, sizeof(int64_t) * (size_t)(nd - 2));
    memcpy(sb, batch, sizeof(int64_t) * (size_t)(nd - 2));
    sa[nd - 2] = sa[nd - 1] = pn_dim(*a, -1);
    sb[nd - 2] = pn_dim(*b, -2), sb[nd - 1] = pn_dim(*b, -1);
    *a = pn_broadcast_to(*a, sa, nd);
    *b = pn_broadcast_to(*b, sb, nd);
    return *a && *b ? 0 : -1;
}

/* ───────────────────────────── SolveTriangular ───────────────────────────── */

static pn_array *trsm_make(pn_array *a, pn_array *b, const pnK_trsm_params *p);

/* x = T^-1 b with T the triangle of a: b's cotangent is T^-T g (the transposed solve), T's is
 * -(T^-T g) x^T restricted to the triangle read. */
static int trsm_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                    pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const pnK_trsm_params *p = PNC_PARAMS(nd, pnK_trsm_params);
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    pnK_trsm_params q = *p;
    q.upper = !p->upper;
    pn_array *gb = trsm_make(mT(in[0]), cot[0], &q);
    bool ok = gb != NULL;
    for (int i = 0; i < nargs; i++) {
        grads[i] = argnums[i] == 1 ? gb
                                   : pn_negative(triangle(pn_matmul(gb, mT(out[0])), p->upper, p->unit));
        ok &= grads[i] != NULL;
    }
    pn_scope_pop_keep(grads, ok ? nargs : 0);
    if (!ok) for (int i = 0; i < nargs; i++) grads[i] = NULL;
    return ok ? 0 : -1;
}

/* dx = T^-1 (db - dT x). */
static int trsm_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    const pnK_trsm_params *p = PNC_PARAMS(nd, pnK_trsm_params);
    out_tan[0] = NULL;
    if (!tan[0] && !tan[1]) return 0;
    pn_scope_push();
    pn_array *rhs = tan[1];
    if (tan[0]) {
        pn_array *d = pn_matmul(triangle(tan[0], p->upper, p->unit), out[0]);
        rhs = rhs ? pn_subtract(rhs, d) : pn_negative(d);
    }
    out_tan[0] = pnC_scope_return(trsm_make(in[0], rhs, p));
    return out_tan[0] ? 0 : -1;
}

/* Moves the mapped axes to the front and broadcasts the batch. */
static int trsm_vmap(const pnC_node *nd, pn_array *const *in, const int *in_axes,
                     pn_array **out, int *out_axes)
{
    int rank = 0;
    for (int k = 0; k < 2; k++) {
        int r = in[k]->ndim - (in_axes[k] >= 0);
        rank = r > rank ? r : rank;
    }
    pn_scope_push();
    pn_array *a = pnC_batch_front(in[0], in_axes[0], rank);
    pn_array *b = pnC_batch_front(in[1], in_axes[1], rank);
    out[0] = a && b && !broadcast_batch("linalg::solve_triangular", &a, &b)
                 ? trsm_make(a, b, PNC_PARAMS(nd, pnK_trsm_params))
                 : NULL;
    out_axes[0] = in_axes[0] >= 0 || in_axes[1] >= 0 ? 0 : -1;
    pn_scope_pop_keep(out, out[0] ? 1 : 0);
    return out[0] ? 0 : -1;
}

const pnC_primitive solve_triangular_prim = {
    .name = "SolveTriangular",
    .not_in_graphs = true, /* the first zero on the diagonal */
    .eval = {[PN_CPU] = pnK_trsm_eval, [PN_GPU] = PNG_EVAL(pnG_trsm_eval)},
    .vjp = trsm_vjp,
    .jvp = trsm_jvp,
    .vmap = trsm_vmap,
};

/* The node solving with a (..., n, n) and b (..., n, k) of one batch shape and dtype. */
static pn_array *trsm_make(pn_array *a, pn_array *b, const pnK_trsm_params *p)
{
    pn_array *ins[2] = {a, b};
    if (!pnC_inputs_ok("linalg::solve_triangular", 2, ins)) return NULL;
    return pnC_make(&solve_triangular_prim, p, sizeof *p, 2, ins, pn_array_dtype(b), pn_shape(b),
                    pn_ndim(b));
}

/* a^-1 b for the triangle of a (square, any float dtype) and b (..., n) or (..., n, k), batch
 * dims broadcast, in a's and b's common floating dtype. */
/* The operands of a solve a x = b for function op: a square, b (..., n) (*vec) or
 * (..., n, K), both cast to the compute type of their common floating dtype (*t) with b as a
 * matrix and the batch dims broadcast. Opens a scope (close it with pnC_scope_return) unless
 * the checks fail first. 0 or -1. */
static int solve_operands(const char *op, pn_array **a, pn_array **b, bool *vec, pn_dtype *t)
{
    int64_t n = square_matrix(op, *a);
    if (n < 0) return -1;
    *vec = pn_ndim(*b) == 1;
    if (pn_ndim(*b) < 1 || (*vec ? pn_shape(*b)[0] : pn_dim(*b, -2)) != n)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::%s] b must be a vector of size %lld or "
                        "(..., %lld, K) matrices.", op, (long long)n, (long long)n), -1;
    *t = pn_promote_types(pn_array_dtype(*a), pn_array_dtype(*b));
    if (!pnC_is_float(*t)) *t = PN_FLOAT32;
    pn_dtype ct = compute_type(*t);
    pn_scope_push();
    *a = pn_astype(*a, ct);
    *b = pn_astype(*vec ? pn_expand_dims(*b, (int[]){-1}, 1) : *b, ct);
    char name[48];
    snprintf(name, sizeof name, "linalg::%s", op);
    if (*a && *b && !broadcast_batch(name, a, b)) return 0;
    pnC_scope_return(NULL);
    return -1;
}

static pn_array *solve_tri(const char *op, pn_array *a, pn_array *b, bool upper, bool unit,
                           uint8_t fn)
{
    bool vec;
    pn_dtype t;
    if (solve_operands(op, &a, &b, &vec, &t)) return NULL;
    pnK_trsm_params p = {.upper = upper, .unit = unit, .fn = fn};
    pn_array *x = pn_astype(trsm_make(a, b, &p), t);
    return pnC_scope_return(vec ? pn_squeeze(x, (int[]){-1}, 1) : x);
}

/* See ponte.h. */
pn_array *pn_linalg_solve_triangular(pn_array *a, pn_array *b, bool upper)
{
    pn_array *ins[2] = {a, b};
    if (!pnC_inputs_ok("linalg::solve_triangular", 2, ins)) return NULL;
    return solve_tri("solve_triangular", a, b, upper, false, PNK_SOLVE_TRIANGULAR);
}

/* The n×n identity in a's dtype (0×0 included, which pn_eye refuses as MLX's eye does). */
static pn_array *identity_like(pn_array *a, int64_t n)
{
    return n ? pn_eye(n, n, 0, pn_array_dtype(a)) : pn_zeros((int64_t[]){0, 0}, 2, pn_array_dtype(a));
}

/* See ponte.h. */
pn_array *pn_linalg_tri_inv(pn_array *a, bool upper)
{
    if (!pnC_inputs_ok("linalg::tri_inv", 1, &a)) return NULL;
    int64_t n = square_matrix("tri_inv", a);
    if (n < 0) return NULL;
    pn_scope_push();
    return pnC_scope_return(solve_tri("tri_inv", a, identity_like(a, n), upper, false, PNK_TRI_INV));
}

/* See ponte.h. */
pn_array *pn_linalg_cholesky_inv(pn_array *l, bool upper)
{
    if (!pnC_inputs_ok("linalg::cholesky_inv", 1, &l)) return NULL;
    int64_t n = square_matrix("cholesky_inv", l);
    if (n < 0) return NULL;
    pn_scope_push();
    pn_array *li = solve_tri("cholesky_inv", l, identity_like(l, n), upper, false, PNK_CHOLESKY_INV);
    /* A = L L^T: A^-1 = L^-T L^-1; A = U^T U: A^-1 = U^-1 U^-T */
    return pnC_scope_return(upper ? pn_matmul(li, mT(li)) : pn_matmul(mT(li), li));
}

/* a^-1 b through lu (a = (L U)[p], MLX's convention): b's rows put in U's order, then the
 * unit-lower and the upper solve; for the inverse (b the identity) the columns of (L U)^-1
 * are put in a's order instead. b (..., n, k) has a's batch shape and (compute) dtype. */
static pn_array *lu_solve(pn_array *a, pn_array *b, uint8_t fn, bool inverse)
{
    if (pn_dim(a, -1) == 0) return pn_copy(b); /* nothing to solve */
    pn_array *p = NULL, *l = NULL, *u = NULL;
    if (pn_linalg_lu(a, &p, &l, &u)) return NULL;
    pnK_trsm_params lower = {.upper = false, .unit = true, .fn = fn};
    pnK_trsm_params upper = {.upper = true, .unit = false, .fn = fn};
    int64_t sh[PNC_MAX_NDIM];
    int nd = pn_ndim(b);
    memcpy(sh, pn_shape(b), sizeof(int64_t) * (size_t)nd);
    if (inverse) { /* a^-1 = (L U)^-1 P^T: column j is column p[j] of (L U)^-1 */
        pn_array *x = trsm_make(u, trsm_make(l, b, &lower), &upper);
        pn_array *idx = pn_broadcast_to(pn_expand_dims(p, (int[]){-2}, 1), sh, nd);
        return pn_take_along_axis(x, idx, -1);
    }
    /* L U x = b' with b'[p[i]] = b[i] */
    pn_array *idx = pn_broadcast_to(pn_expand_dims(pn_argsort(p, -1), (int[]){-1}, 1), sh, nd);
    pn_array *pb = pn_take_along_axis(b, idx, -2);
    return trsm_make(u, trsm_make(l, pb, &lower), &upper);
}

/* See ponte.h. */
pn_array *pn_linalg_inv(pn_array *a)
{
    if (!pnC_inputs_ok("linalg::inv", 1, &a)) return NULL;
    int64_t n = square_matrix("inv", a);
    if (n < 0) return NULL;
    pn_dtype t = pn_array_dtype(a);
    pn_scope_push();
    a = pn_astype(a, compute_type(t));
    int64_t sh[PNC_MAX_NDIM];
    memcpy(sh, pn_shape(a), sizeof(int64_t) * (size_t)pn_ndim(a));
    pn_array *eye = pn_broadcast_to(identity_like(a, n), sh, pn_ndim(a));
    return pnC_scope_return(pn_astype(lu_solve(a, eye, PNK_INV, true), t));
}

/* See ponte.h. */
pn_array *pn_linalg_solve(pn_array *a, pn_array *b)
{
    pn_array *ins[2] = {a, b};
    if (!pnC_inputs_ok("linalg::solve", 2, ins)) return NULL;
    bool vec;
    pn_dtype t;
    if (solve_operands("solve", &a, &b, &vec, &t)) return NULL;
    pn_array *x = pn_astype(lu_solve(a, b, PNK_SOLVE, false), t);
    return pnC_scope_return(vec ? pn_squeeze(x, (int[]){-1}, 1) : x);
}

/* ───────────────────────────── Cholesky ───────────────────────────── */

/* Φ(x): the lower triangle of x with its diagonal halved. */
static pn_array *phi(pn_array *x)
{
    pn_array *d = pn_diagonal(x, 0, -2, -1);
    int64_t n = pn_dim(x, -1);
    pn_array *half_diag = pn_multiply(pn_expand_dims(d, (int[]){-1}, 1),
                                      pn_multiply(pn_eye(n, n, 0, pn_array_dtype(x)),
                                                  pn_scalar(0.5, pn_array_dtype(x))));
    return pn_subtract(pn_tril(x, 0), half_diag);
}

/* The symmetric matrix the factorization reads from a: its lower triangle, mirrored. */
static pn_array *symmetric_of(pn_array *a) { return pn_add(pn_tril(a, 0), mT(pn_tril(a, -1))); }

/* L = chol(A), A built from a's lower triangle. With S = L^-T Φ(L^T gL) L^-1 (Murray, 2016),
 * <gL, dL> = <S, dA> for symmetric dA; a's lower triangle enters A twice off the diagonal. */
static int chol_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                    pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    (void)nd, (void)in, (void)argnums, (void)nargs;
    grads[0] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    pn_array *L = out[0];
    pn_array *p = phi(pn_matmul(mT(L), cot[0]));
    /* S = L^-T P L^-1: solve L^T Y = P, then S^T = L^-T Y^T */
    pn_array *y = pn_linalg_solve_triangular(mT(L), p, true);
    pn_array *s = mT(pn_linalg_solve_triangular(mT(L), mT(y), true));
    grads[0] = pnC_scope_return(pn_subtract(pn_tril(pn_add(s, mT(s)), 0),
                                            pn_multiply(pn_eye(pn_dim(s, -1), pn_dim(s, -1), 0,
                                                               pn_array_dtype(s)), s)));
    return grads[0] ? 0 : -1;
}

/* dL = L Φ(L^-1 dA L^-T). */
static int chol_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    (void)nd, (void)in;
    out_tan[0] = NULL;
    if (!tan[0]) return 0;
    pn_scope_push();
    pn_array *L = out[0];
    pn_array *x = pn_linalg_solve_triangular(L, symmetric_of(tan[0]), false); /* L^-1 dA */
    pn_array *z = mT(pn_linalg_solve_triangular(L, mT(x), false));           /* L^-1 dA L^-T */
    out_tan[0] = pnC_scope_return(pn_matmul(L, phi(z)));
    return out_tan[0] ? 0 : -1;
}

static int chol_vmap(const pnC_node *nd, pn_array *const *in, const int *in_axes,
                     pn_array **out, int *out_axes)
{
    pn_array *x = in_axes[0] > 0 ? pn_moveaxis(in[0], in_axes[0], 0) : in[0];
    out[0] = x ? pnC_make(nd->prim, NULL, 0, 1, &x, pn_array_dtype(x), pn_shape(x), pn_ndim(x)) : NULL;
    out_axes[0] = in_axes[0] >= 0 ? 0 : -1;
    return out[0] ? 0 : -1;
}

const pnC_primitive cholesky_prim = {
    .name = "Cholesky",
    .eval = {[PN_CPU] = pnK_cholesky_eval, [PN_GPU] = PNG_EVAL(pnG_cholesky_eval)},
    .vjp = chol_vjp,
    .jvp = chol_jvp,
    .vmap = chol_vmap,
};

/* See ponte.h. As MLX (LAPACK potrf): a matrix that is not positive definite gives the
 * partial factor potrf leaves, not an error. */
pn_array *pn_linalg_cholesky(pn_array *a, bool upper)
{
    if (!pnC_inputs_ok("linalg::cholesky", 1, &a)) return NULL;
    if (square_matrix("cholesky", a) < 0) return NULL;
    pn_dtype t = pn_array_dtype(a);
    pn_scope_push();
    pn_array *x = pn_astype(a, compute_type(t));
    pn_array *l = x ? pnC_make(&cholesky_prim, NULL, 0, 1, &x, pn_array_dtype(x), pn_shape(x),
                               pn_ndim(x))
                    : NULL;
    l = pn_astype(l, t);
    return pnC_scope_return(upper ? mT(l) : l);
}

/* ───────────────────────────── det, slogdet ───────────────────────────── */

/* Checks a for det/slogdet (fn names the function) and factors it: d (..., n) the diagonal of
 * U and psign (...) the permutation's sign (-1 for an odd number of row swaps), both in the
 * compute dtype (float64 for float64 input, else float32). Sets *out_t to the result dtype
 * (a's for floating a, float32 otherwise) and *empty for n = 0 (d and psign are then NULL).
 * 0 or -1. Arrays belong to the current scope. */
static int det_factor(const char *fn, pn_array *a, pn_array **d, pn_array **psign, pn_dtype *out_t,
                      bool *empty)
{
    char op[32];
    snprintf(op, sizeof op, "linalg::%s", fn);
    if (!pnC_inputs_ok(op, 1, &a)) return -1;
    int nd = pn_ndim(a);
    pn_dtype t = pn_array_dtype(a);
    if (nd < 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[%s] Arrays must have >= 2 dimensions. Received array with %d dimensions.", op, nd),
               -1;
    if (pn_dim(a, -1) != pn_dim(a, -2))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Only defined for square matrices.", op), -1;
    if (t == PN_COMPLEX64)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Complex inputs are not supported.", op), -1;
    *out_t = pnC_is_float(t) ? t : PN_FLOAT32;
    int64_t n = pn_dim(a, -1);
    *empty = n == 0;
    *d = *psign = NULL;
    if (n == 0) return 0;
    pn_dtype ct = t == PN_FLOAT64 ? PN_FLOAT64 : PN_FLOAT32;
    pn_array *lu, *piv;
    if (pn_linalg_lu_factor(t == ct ? a : pn_astype(a, ct), &lu, &piv)) return -1;
    *d = pn_diagonal(lu, 0, -2, -1);
    pn_array *swaps = pn_sum(pn_astype(pn_not_equal(piv, pn_arange(0, (double)n, 1, PN_UINT32)), PN_INT32),
                             (int[]){-1}, 1, false);
    pn_array *odd = pn_astype(pn_bitwise_and(swaps, pn_scalar_int(1, PN_INT32)), ct);
    *psign = pn_subtract(pn_scalar(1.0, ct), pn_multiply(pn_scalar(2.0, ct), odd));
    return *d && *psign ? 0 : -1;
}

/* The batch shape of a (..., n, n). */
static int batch_of(pn_array *a, int64_t *shape)
{
    int nd = pn_ndim(a) - 2;
    for (int k = 0; k < nd; k++) shape[k] = pn_shape(a)[k];
    return nd;
}

/* See ponte.h. det = psign * prod(diag(U)). */
pn_array *pn_linalg_det(pn_array *a)
{
    pn_scope_push();
    pn_array *d, *psign;
    pn_dtype t;
    bool empty;
    if (det_factor("det", a, &d, &psign, &t, &empty)) return pnC_scope_return(NULL);
    int64_t bs[PNC_MAX_NDIM];
    if (empty) return pnC_scope_return(pn_ones(bs, batch_of(a, bs), t));
    pn_array *r = pn_multiply(psign, pn_prod(d, (int[]){-1}, 1, false));
    return pnC_scope_return(r && pn_array_dtype(r) != t ? pn_astype(r, t) : r);
}

/* See ponte.h. sign = psign * prod(sign(diag(U))), logabsdet = sum(log|diag(U)|). */
int pn_linalg_slogdet(pn_array *a, pn_array **sign, pn_array **logabsdet)
{
    sign[0] = logabsdet[0] = NULL;
    pn_scope_push();
    pn_array *d, *psign, *r[2];
    pn_dtype t;
    bool empty;
    if (det_factor("slogdet", a, &d, &psign, &t, &empty)) {
        pn_scope_pop();
        return -1;
    }
    int64_t bs[PNC_MAX_NDIM];
    if (empty) {
        int nb = batch_of(a, bs);
        r[0] = pn_ones(bs, nb, t), r[1] = pn_zeros(bs, nb, t);
    } else {
        r[0] = pn_astype(pn_multiply(psign, pn_prod(pn_sign(d), (int[]){-1}, 1, false)), t);
        r[1] = pn_astype(pn_sum(pn_log(pn_abs(d)), (int[]){-1}, 1, false), t);
    }
    bool ok = r[0] && r[1];
    pn_scope_pop_keep(r, ok ? 2 : 0);
    if (!ok) return -1;
    sign[0] = r[0], logabsdet[0] = r[1];
    return 0;
}
