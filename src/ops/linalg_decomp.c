/* linalg_decomp.c — mlx.core.linalg's decompositions: the primitives SVD, Eigh, Eig, LUF and
 * QRF (LAPACK on the CPU, cuSOLVER on the GPU), their derivatives (SVD and Eigh through the
 * spectral-gap matrix F, LUF and QRF through triangular solves), and the functions built on
 * them: lu, lu_factor, qr, eigvalsh, eigvals, pinv. All batch over the
 * leading axes and take float32 or float64. */
#include "backend/cpu/lapack.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

#include <float.h>
#include <stdio.h>
#include <string.h>

/* ───────────────────────────── helpers ───────────────────────────── */

/* Checks a (batch of) matrices for the decomposition `fn` the way MLX words it: float32 or
 * float64, at least two dimensions, square when asked. Returns 0 or -1 with an error. */
/* check_matrix, complex64 also allowed when cplx. */
static int check_matrix_of(const char *fn, pn_array *a, bool square, bool cplx)
{
    pn_dtype t = pn_array_dtype(a);
    if (t != PN_FLOAT32 && t != PN_FLOAT64 && !(cplx && t == PN_COMPLEX64))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::%s] Arrays must have type float32 or "
                        "float64. Received array with type %s.", fn, pn_dtype_name(t)), -1;
    if (pn_ndim(a) < 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::%s] Arrays must have >= 2 dimensions. "
                        "Received array with %d dimensions.", fn, pn_ndim(a)), -1;
    if (square && pn_dim(a, -1) != pn_dim(a, -2)) {
        char buf[128];
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::%s] Only defined for square matrices. "
                        "Received array with shape %s.", fn,
                        pnC_shape_str(pn_shape(a), pn_ndim(a), buf, sizeof buf)), -1;
    }
    return 0;
}

static int check_matrix(const char *fn, pn_array *a, bool square)
{
    return check_matrix_of(fn, a, square, false);
}

/* x[..., r0:r1, c0:c1] on the last two axes (r1/c1 < 0: to the end). */
static pn_array *block(pn_array *x, int64_t r0, int64_t r1, int64_t c0, int64_t c1)
{
    if (!x) return NULL;
    int nd = pn_ndim(x);
    int64_t lo[PNC_MAX_NDIM] = {0}, hi[PNC_MAX_NDIM];
    memcpy(hi, pn_shape(x), sizeof(int64_t) * (size_t)nd);
    lo[nd - 2] = r0, lo[nd - 1] = c0;
    if (r1 >= 0) hi[nd - 2] = r1;
    if (c1 >= 0) hi[nd - 1] = c1;
    return pn_slice(x, lo, hi, NULL, nd);
}

static pn_array *mT(pn_array *x) { return pn_swapaxes(x, -1, -2); }

/* ── complex64 inputs through the real embedding M = [[X, -Y], [Y, X]] of A = X + iY ──
 * M's spectrum is A's with every value doubled, and a vector [u; v] of M is u + iv of A: the
 * even-indexed values and vectors of M give A's (an eigen/singular value of A repeated across
 * distinct vectors may give dependent ones; MLX's complex kernels have no such limit). */

/* [[X, -Y], [Y, X]] (float32) of the complex a (..., m, n). */
static pn_array *real_embedding(pn_array *a)
{
    pn_array *x = pn_real(a), *y = pn_imag(a);
    pn_array *top[2] = {x, pn_negative(y)}, *bot[2] = {y, x};
    pn_array *rows[2] = {pn_concatenate(top, 2, -1), pn_concatenate(bot, 2, -1)};
    return pn_concatenate(rows, 2, -2);
}

/* x[..., ::2] along axis (-1 or -2), from offset 0. */
static pn_array *even(pn_array *x, int axis)
{
    if (!x) return NULL;
    int nd = pn_ndim(x);
    int64_t lo[PNC_MAX_NDIM], hi[PNC_MAX_NDIM], st[PNC_MAX_NDIM];
    for (int d = 0; d < nd; d++) lo[d] = 0, hi[d] = pn_shape(x)[d], st[d] = 1;
    st[nd + axis] = 2;
    return pn_slice(x, lo, hi, st, nd);
}

/* re + i im, complex64. */
static pn_array *make_complex(pn_array *re, pn_array *im)
{
    return pn_add(pn_astype(re, PN_COMPLEX64), pn_multiply(im, pn_scalar_complex(0, 1)));
}
static pn_array *mm(pn_array *a, pn_array *b) { return pn_matmul(a, b); }
/* a + b where NULL is zero. */
static pn_array *acc(pn_array *a, pn_array *b) { return !a ? b : !b ? a : pn_add(a, b); }
/* v (..., k) as a row (..., 1, k) or a column (..., k, 1). */
static pn_array *row(pn_array *v) { return pn_expand_dims(v, (int[]){-2}, 1); }
static pn_array *col(pn_array *v) { return pn_expand_dims(v, (int[]){-1}, 1); }
static pn_array *diag_of(pn_array *x) { return pn_diagonal(x, 0, -2, -1); }
/* (..., k, k) with v (..., k) on the diagonal. */
static pn_array *diag_embed(pn_array *v)
{
    int64_t k = pn_dim(v, -1);
    return pn_multiply(row(v), pn_eye(k, k, 0, pn_array_dtype(v)));
}
/* F (..., k, k) with F_ij = 1 / (x_j - x_i) off the diagonal and 0 on it: the spectral gaps
 * every eigen/singular vector derivative divides by. */
static pn_array *gap_recip(pn_array *x)
{
    int64_t k = pn_dim(x, -1);
    pn_dtype t = pn_array_dtype(x);
    pn_array *on = pn_astype(pn_eye(k, k, 0, t), PN_BOOL);
    pn_array *d = pn_subtract(row(x), col(x));
    return pn_where(on, pn_scalar(0, t), pn_reciprocal(pn_where(on, pn_scalar(1, t), d)));
}
/* x[..., i] gathered along axis -2 by idx (..., m) (rows of x (..., m, n)). */
static pn_array *take_rows(pn_array *x, pn_array *idx)
{
    if (!x || !idx) return NULL;
    return pn_take_along_axis(x, pn_broadcast_to(col(idx), pn_shape(x), pn_ndim(x)), -2);
}
/* Error status of a derivative rule that built `r` (NULL with no error recorded is zero). */
static int status(pn_array *r) { return r || !pnC_failed() ? 0 : -1; }

/* The shape of a with its last `drop` axes replaced by the `nadd` extents in add. */
static int out_shape(pn_array *a, int drop, const int64_t *add, int nadd, int64_t *shape)
{
    int nb = pn_ndim(a) - drop;
    memcpy(shape, pn_shape(a), sizeof(int64_t) * (size_t)nb);
    memcpy(shape + nb, add, sizeof(int64_t) * (size_t)nadd);
    return nb + nadd;
}

/* The decompositions batch over leading axes: vmap moves the mapped axis to the front and
 * applies the primitive once. */
static int decomp_vmap(const pnC_node *nd, pn_array *const *in, const int *in_axes,
                       pn_array **out, int *out_axes)
{
    int ax = in_axes[0];
    pn_array *x = ax > 0 ? pn_moveaxis(in[0], ax, 0) : in[0];
    if (!x) return -1;
    int64_t shapes[4][PNC_MAX_NDIM];
    const int64_t *sp[4];
    int ndims[4];
    for (int j = 0; j < nd->nout && j < 4; j++) {
        int o = ax >= 0;
        if (nd->out_ndims[j] + o > PNC_MAX_NDIM)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Too many dimensions under vmap.",
                            nd->prim->name), -1;
        if (o) shapes[j][0] = pn_shape(x)[0];
        memcpy(shapes[j] + o, nd->out_shapes[j], sizeof(int64_t) * (size_t)nd->out_ndims[j]);
        sp[j] = shapes[j];
        ndims[j] = nd->out_ndims[j] + o;
        out_axes[j] = o ? 0 : -1;
    }
    return pnC_make_multi(nd->prim, nd->params, nd->params_size, 1, &x, nd->nout, nd->out_dtypes,
                          sp, ndims, out);
}

/* ───────────────────────────── SVD ───────────────────────────── */

/* U (..., m, m), S (..., k), Vt (..., n, n) of a: the node's outputs, or a fresh full SVD
 * when the node computed S only. Returns 0 or -1. */
static int svd_factors(const pnC_node *nd, pn_array *a, pn_array *const *out, pn_array **usv)
{
    if (PNC_PARAMS(nd, pnK_decomp_params)->vectors) {
        usv[0] = out[0], usv[1] = out[1], usv[2] = out[2];
        return 0;
    }
    return pn_linalg_svd(a, true, usv);
}

/* Reverse mode (Townsend, "Differentiating the singular value decomposition", 2016) for
 * a = Uk S Vk^T with the first k columns of U and V: with F_ij = 1/(s_j^2 - s_i^2),
 *   abar = Uk [diag(gS) + (F o (Uk^T gUk - gUk^T Uk)) S + S (F o (Vk^T gVk - gVk^T Vk))] Vk^T
 *        + (I - Uk Uk^T) gUk S^-1 Vk^T + Uk S^-1 gVk^T (I - Vk Vk^T).
 * Cotangents of the columns of U and V past k (arbitrary completions) are ignored. */
static int svd_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                   pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    bool vec = PNC_PARAMS(nd, pnK_decomp_params)->vectors;
    pn_array *gU = vec ? cot[0] : NULL, *gS = vec ? cot[1] : cot[0], *gVt = vec ? cot[2] : NULL;
    grads[0] = NULL;
    if (!gU && !gS && !gVt) return 0;
    pn_scope_push();
    pn_array *usv[3] = {NULL, NULL, NULL};
    int64_t m = pn_dim(in[0], -2), n = pn_dim(in[0], -1), k = m < n ? m : n;
    pn_array *g = NULL;
    if (svd_factors(nd, in[0], out, usv) == 0) {
        pn_array *s = usv[1], *Uk = block(usv[0], 0, -1, 0, k), *V = mT(block(usv[2], 0, k, 0, -1));
        pn_array *F = gap_recip(pn_square(s)), *rs = pn_reciprocal(s);
        pn_array *inner = gS ? diag_embed(gS) : NULL, *gUk = NULL, *gV = NULL;
        if (gU) {
            gUk = block(gU, 0, -1, 0, k);
            pn_array *x = mm(mT(Uk), gUk);
            inner = acc(inner, pn_multiply(pn_multiply(F, pn_subtract(x, mT(x))), row(s)));
        }
        if (gVt) {
            gV = mT(block(gVt, 0, k, 0, -1));
            pn_array *y = mm(mT(V), gV);
            inner = acc(inner, pn_multiply(col(s), pn_multiply(F, pn_subtract(y, mT(y)))));
        }
        g = mm(mm(Uk, inner), mT(V));
        if (gU && m > k)
            g = pn_add(g, mm(pn_multiply(pn_subtract(gUk, mm(Uk, mm(mT(Uk), gUk))), row(rs)), mT(V)));
        if (gVt && n > k) {
            pn_array *gVT = mT(gV);
            g = pn_add(g, mm(Uk, pn_multiply(col(rs), pn_subtract(gVT, mm(mm(gVT, V), mT(V))))));
        }
    }
    grads[0] = g;
    pn_scope_pop_keep(grads, 1);
    return status(g);
}

/* Forward mode, with dP = Uk^T da Vk: dS = diag(dP),
 *   dUk = Uk (F o (dP S + S dP^T)) + (I - Uk Uk^T) da Vk S^-1,
 *   dVk = Vk (F o (S dP + dP^T S)) + (I - Vk Vk^T) da^T Uk S^-1;
 * the completing columns of U (V) move as -Uk dUk^T U_rest so that U stays orthogonal. */
static int svd_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                   pn_array *const *tan, pn_array **out_tan)
{
    bool vec = PNC_PARAMS(nd, pnK_decomp_params)->vectors;
    int nout = vec ? 3 : 1;
    for (int j = 0; j < nout; j++) out_tan[j] = NULL;
    pn_array *da = tan[0];
    if (!da) return 0;
    pn_scope_push();
    pn_array *usv[3] = {NULL, NULL, NULL};
    int64_t m = pn_dim(in[0], -2), n = pn_dim(in[0], -1), k = m < n ? m : n;
    if (svd_factors(nd, in[0], out, usv) == 0) {
        pn_array *U = usv[0], *s = usv[1], *Vt = usv[2];
        pn_array *Uk = block(U, 0, -1, 0, k), *V = mT(block(Vt, 0, k, 0, -1));
        pn_array *daV = mm(da, V), *dP = mm(mT(Uk), daV);
        out_tan[vec ? 1 : 0] = diag_of(dP);
        if (vec) {
            pn_array *F = gap_recip(pn_square(s)), *rs = row(pn_reciprocal(s));
            pn_array *dPt = mT(dP);
            pn_array *dUk = mm(Uk, pn_multiply(F, pn_add(pn_multiply(dP, row(s)), pn_multiply(col(s), dPt))));
            pn_array *dV = mm(V, pn_multiply(F, pn_add(pn_multiply(col(s), dP), pn_multiply(dPt, row(s)))));
            if (m > k) dUk = pn_add(dUk, pn_multiply(pn_subtract(daV, mm(Uk, dP)), rs));
            if (n > k) dV = pn_add(dV, pn_multiply(pn_subtract(mm(mT(da), Uk), mm(V, dPt)), rs));
            pn_array *dU = dUk, *dVt = mT(dV);
            if (m > k) {
                pn_array *parts[2] = {dUk, pn_negative(mm(Uk, mm(mT(dUk), block(U, 0, -1, k, -1))))};
                dU = pn_concatenate(parts, 2, -1);
            }
            if (n > k) {
                pn_array *Vr = mT(block(Vt, k, -1, 0, -1));
                pn_array *parts[2] = {dVt, mT(pn_negative(mm(V, mm(mT(dV), Vr))))};
                dVt = pn_concatenate(parts, 2, -2);
            }
            out_tan[0] = dU, out_tan[2] = dVt;
        }
    }
    pn_scope_pop_keep(out_tan, nout);
    for (int j = 0; j < nout; j++)
        if (!out_tan[j] && pnC_failed()) return -1;
    return 0;
}

const pnC_primitive svd_prim = {
    .name = "SVD",
    .not_in_graphs = true, /* cuSOLVER's status words */
    .eval = {[PN_CPU] = pnK_svd_eval, [PN_GPU] = PNG_EVAL(pnG_svd_eval)},
    .vjp = svd_vjp,
    .jvp = svd_jvp,
    .vmap = decomp_vmap,
};

/* svd of a complex64 a through its real embedding: S (float32) the even singular values, U's
 * columns and Vt's rows from the even ones of the embedding's (Vt = V^H). */
static int complex_svd(pn_array *a, bool compute_uv, pn_array **out)
{
    if (pn_ndim(a) < 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::svd] Arrays must have >= 2 dimensions. "
                        "Received array with %d dimensions.", pn_ndim(a)), -1;
    int64_t m = pn_dim(a, -2), n = pn_dim(a, -1);
    if (compute_uv && m != n) /* the null space's complex basis would need a complex QR */
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::svd] complex64 singular vectors "
                        "need a square matrix in Ponte (got %lld x %lld); compute_uv=False "
                        "takes any shape.", (long long)m, (long long)n), -1;
    int nout = compute_uv ? 3 : 1;
    pn_scope_push();
    pn_array *r[3] = {NULL, NULL, NULL};
    int rc = pn_linalg_svd(real_embedding(a), compute_uv, r);
    if (rc == 0 && !compute_uv) {
        out[0] = even(r[0], -1);
    } else if (rc == 0) {
        out[0] = make_complex(block(even(r[0], -1), 0, m, 0, -1), block(even(r[0], -1), m, -1, 0, -1));
        out[1] = even(r[1], -1);
        pn_array *vt = even(r[2], -2);
        out[2] = make_complex(block(vt, 0, -1, 0, n), pn_negative(block(vt, 0, -1, n, -1)));
    }
    pn_scope_pop_keep(out, nout);
    for (int j = 0; j < nout; j++)
        if (!out[j]) {
            for (int i = 0; i < nout; i++) out[i] = NULL;
            return -1;
        }
    return 0;
}

/* See ponte.h. */
int pn_linalg_svd(pn_array *a, bool compute_uv, pn_array **out)
{
    out[0] = NULL;
    if (compute_uv) out[1] = out[2] = NULL;
    if (a && pn_array_dtype(a) == PN_COMPLEX64 && pnC_inputs_ok("linalg::svd", 1, &a))
        return complex_svd(a, compute_uv, out);
    if (!pnC_inputs_ok("linalg::svd", 1, &a) || check_matrix("svd", a, false)) return -1;
    int64_t m = pn_dim(a, -2), n = pn_dim(a, -1), k = m < n ? m : n;
    int64_t su[PNC_MAX_NDIM], ss[PNC_MAX_NDIM], sv[PNC_MAX_NDIM];
    int nu = out_shape(a, 2, (int64_t[]){m, m}, 2, su), ns = out_shape(a, 2, &k, 1, ss);
    int nv = out_shape(a, 2, (int64_t[]){n, n}, 2, sv);
    pn_dtype t = pn_array_dtype(a);
    pnK_decomp_params p = {.vectors = compute_uv};
    if (!compute_uv) {
        const int64_t *shapes[1] = {ss};
        return pnC_make_multi(&svd_prim, &p, sizeof p, 1, &a, 1, &t, shapes, &ns, out);
    }
    const int64_t *shapes[3] = {su, ss, sv};
    const int nds[3] = {nu, ns, nv};
    const pn_dtype dts[3] = {t, t, t};
    return pnC_make_multi(&svd_prim, &p, sizeof p, 1, &a, 3, dts, shapes, nds, out);
}

/* ───────────────────────────── Eigh ───────────────────────────── */

/* w and V of the node, or a fresh eigh when it computed the values only. */
static int eigh_factors(const pnC_node *nd, pn_array *a, pn_array *const *out, pn_array **wv)
{
    const pnK_decomp_params *p = PNC_PARAMS(nd, pnK_decomp_params);
    if (p->vectors) {
        wv[0] = out[0], wv[1] = out[1];
        return 0;
    }
    return pn_linalg_eigh(a, p->upper ? 'U' : 'L', &wv[0], &wv[1]);
}

/* Reverse mode: with F_ij = 1/(w_j - w_i), abar = V (diag(gw) + F o (V^T gV)) V^T,
 * symmetrized: the gradient with respect to a symmetric matrix (as PyTorch and JAX give it). */
static int eigh_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                    pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    bool vec = PNC_PARAMS(nd, pnK_decomp_params)->vectors;
    pn_array *gw = cot[0], *gV = vec ? cot[1] : NULL;
    grads[0] = NULL;
    if (!gw && !gV) return 0;
    pn_scope_push();
    pn_array *wv[2] = {NULL, NULL}, *g = NULL;
    if (eigh_factors(nd, in[0], out, wv) == 0) {
        pn_array *V = wv[1];
        pn_array *inner = acc(gw ? diag_embed(gw) : NULL,
                              gV ? pn_multiply(gap_recip(wv[0]), mm(mT(V), gV)) : NULL);
        g = mm(mm(V, inner), mT(V));
        g = pn_multiply(pn_add(g, mT(g)), pn_scalar(0.5, pn_array_dtype(in[0])));
    }
    grads[0] = g;
    pn_scope_pop_keep(grads, 1);
    return status(g);
}

/* Forward mode over the symmetric part of the tangent: dP = V^T sym(da) V, dw = diag(dP),
 * dV = V (F o dP). */
static int eigh_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    bool vec = PNC_PARAMS(nd, pnK_decomp_params)->vectors;
    int nout = vec ? 2 : 1;
    for (int j = 0; j < nout; j++) out_tan[j] = NULL;
    if (!tan[0]) return 0;
    pn_scope_push();
    pn_array *wv[2] = {NULL, NULL};
    if (eigh_factors(nd, in[0], out, wv) == 0) {
        pn_array *V = wv[1];
        pn_array *ds = pn_multiply(pn_add(tan[0], mT(tan[0])), pn_scalar(0.5, pn_array_dtype(in[0])));
        pn_array *dP = mm(mT(V), mm(ds, V));
        out_tan[0] = diag_of(dP);
        if (vec) out_tan[1] = mm(V, pn_multiply(gap_recip(wv[0]), dP));
    }
    pn_scope_pop_keep(out_tan, nout);
    for (int j = 0; j < nout; j++)
        if (!out_tan[j] && pnC_failed()) return -1;
    return 0;
}

const pnC_primitive eigh_prim = {
    .name = "Eigh",
    .not_in_graphs = true, /* cuSOLVER's status words */
    .eval = {[PN_CPU] = pnK_eigh_eval, [PN_GPU] = PNG_EVAL(pnG_eigh_eval)},
    .vjp = eigh_vjp,
    .jvp = eigh_jvp,
    .vmap = decomp_vmap,
};

/* Eigh with or without vectors; fn names the public function in errors. */
static int eigh_make(const char *fn, pn_array *a, char uplo, bool vectors, pn_array **out)
{
    char op[32];
    snprintf(op, sizeof op, "linalg::%s", fn);
    if (!pnC_inputs_ok(op, 1, &a) || check_matrix(fn, a, true)) return -1;
    if (uplo != 'L' && uplo != 'U')
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::%s] UPLO must be 'L' or 'U', got "
                        "'%c'.", fn, uplo), -1;
    int64_t n = pn_dim(a, -1), sw[PNC_MAX_NDIM];
    int nw = out_shape(a, 2, &n, 1, sw);
    pn_dtype t = pn_array_dtype(a);
    pnK_decomp_params p = {.vectors = vectors, .upper = uplo == 'U'};
    const int64_t *shapes[2] = {sw, pn_shape(a)};
    const int nds[2] = {nw, pn_ndim(a)};
    const pn_dtype dts[2] = {t, t};
    return pnC_make_multi(&eigh_prim, &p, sizeof p, 1, &a, vectors ? 2 : 1, dts, shapes, nds, out);
}

/* eigh of a complex64 Hermitian a (its uplo triangle) through the real embedding: w
 * (float32) the even eigenvalues, v's columns from the even eigenvectors. */
static int complex_eigh(const char *fn, pn_array *a, char uplo, bool vectors, pn_array **out)
{
    if (pn_ndim(a) < 2 || pn_dim(a, -1) != pn_dim(a, -2))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::%s] Only defined for square matrices "
                        "with >= 2 dimensions.", fn), -1;
    if (uplo != 'L' && uplo != 'U')
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::%s] UPLO must be 'L' or 'U', got "
                        "'%c'.", fn, uplo), -1;
    int64_t n = pn_dim(a, -1);
    pn_scope_push();
    /* the Hermitian matrix its triangle describes (the diagonal's imaginary part dropped) */
    pn_array *t = uplo == 'L' ? pn_tril(a, -1) : pn_triu(a, 1);
    pn_array *d = pn_astype(pn_real(pn_subtract(a, pn_add(pn_tril(a, -1), pn_triu(a, 1)))),
                            PN_COMPLEX64);
    pn_array *h = pn_add(pn_add(t, pn_conjugate(mT(t))), d);
    pn_array *r[2] = {NULL, NULL};
    int rc = eigh_make(fn, real_embedding(h), 'L', vectors, r);
    out[0] = rc ? NULL : even(r[0], -1);
    if (vectors) {
        pn_array *ve = rc ? NULL : even(r[1], -1);
        out[1] = rc ? NULL : make_complex(block(ve, 0, n, 0, -1), block(ve, n, -1, 0, -1));
    }
    pn_scope_pop_keep(out, vectors ? 2 : 1);
    if (!out[0] || (vectors && !out[1])) {
        out[0] = NULL;
        if (vectors) out[1] = NULL;
        return -1;
    }
    return 0;
}

/* See ponte.h. */
int pn_linalg_eigh(pn_array *a, char uplo, pn_array **w, pn_array **v)
{
    pn_array *out[2] = {NULL, NULL};
    int rc = a && pn_array_dtype(a) == PN_COMPLEX64 && pnC_inputs_ok("linalg::eigh", 1, &a)
                 ? complex_eigh("eigh", a, uplo, true, out)
                 : eigh_make("eigh", a, uplo, true, out);
    w[0] = out[0], v[0] = out[1];
    return rc;
}

/* See ponte.h. */
pn_array *pn_linalg_eigvalsh(pn_array *a, char uplo)
{
    pn_array *w = NULL;
    if (a && pn_array_dtype(a) == PN_COMPLEX64 && pnC_inputs_ok("linalg::eigvalsh", 1, &a))
        return complex_eigh("eigvalsh", a, uplo, false, &w) ? NULL : w;
    return eigh_make("eigvalsh", a, uplo, false, &w) ? NULL : w;
}

/* ───────────────────────────── Eig ───────────────────────────── */

/* Complex outputs of a real or complex64 input (cgeev for the latter): no derivative (as
 * MLX). */
const pnC_primitive eig_prim = {
    .name = "Eig",
    .not_in_graphs = true, /* cuSOLVER's status words */
    .eval = {[PN_CPU] = pnK_eig_eval, [PN_GPU] = PNG_EVAL(pnG_eig_eval)},
    .vmap = decomp_vmap,
};

static int eig_make(const char *fn, pn_array *a, bool vectors, pn_array **out)
{
    char op[32];
    snprintf(op, sizeof op, "linalg::%s", fn);
    if (!pnC_inputs_ok(op, 1, &a) || check_matrix_of(fn, a, true, true)) return -1;
    int64_t n = pn_dim(a, -1), sw[PNC_MAX_NDIM];
    int nw = out_shape(a, 2, &n, 1, sw);
    pnK_decomp_params p = {.vectors = vectors};
    const int64_t *shapes[2] = {sw, pn_shape(a)};
    const int nds[2] = {nw, pn_ndim(a)};
    const pn_dtype dts[2] = {PN_COMPLEX64, PN_COMPLEX64};
    return pnC_make_multi(&eig_prim, &p, sizeof p, 1, &a, vectors ? 2 : 1, dts, shapes, nds, out);
}

/* See ponte.h. */
int pn_linalg_eig(pn_array *a, pn_array **w, pn_array **v)
{
    pn_array *out[2] = {NULL, NULL};
    int rc = eig_make("eig", a, true, out);
    w[0] = out[0], v[0] = out[1];
    return rc;
}

/* See ponte.h. */
pn_array *pn_linalg_eigvals(pn_array *a)
{
    pn_array *w = NULL;
    return eig_make("eigvals", a, false, &w) ? NULL : w;
}

/* ───────────────────────────── LU ───────────────────────────── */

/* L (unit lower) and U of the packed square factor lu. */
static void lu_unpack(pn_array *lu, pn_array **l, pn_array **u)
{
    int64_t n = pn_dim(lu, -1);
    *l = pn_add(pn_tril(lu, -1), pn_eye(n, n, 0, pn_array_dtype(lu)));
    *u = pn_triu(lu, 0);
}

static int luf_square_only(pn_array *a)
{
    if (pn_dim(a, -1) == pn_dim(a, -2)) return 0;
    return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[linalg::lu] Derivatives of the LU "
                        "factorization of non-square matrices are not implemented.");
}

/* Reverse mode through the packed factor (square a = P L U, B = P^T a = L U):
 * Bbar = L^-T (tril(L^T Lbar, -1) + triu(Ubar U^T)) U^-T with Lbar, Ubar the strictly lower
 * and upper parts of the cotangent; abar is Bbar's rows put back in a's order. */
static int luf_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                   pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    grads[0] = NULL;
    if (!cot[0]) return 0;
    if (luf_square_only(in[0])) return -1;
    pn_scope_push();
    pn_array *L, *U, *c = cot[0];
    lu_unpack(out[0], &L, &U);
    pn_array *x = pn_add(pn_tril(mm(mT(L), pn_tril(c, -1)), -1), pn_triu(mm(pn_triu(c, 0), mT(U)), 0));
    pn_array *y = pn_linalg_solve_triangular(mT(L), x, true);
    pn_array *bbar = mT(pn_linalg_solve_triangular(U, mT(y), true));
    grads[0] = take_rows(bbar, out[2]);
    pn_scope_pop_keep(grads, 1);
    return status(grads[0]);
}

/* Forward mode: with Z = L^-1 (P^T da) U^-1, dLU = L tril(Z, -1) + triu(Z) U. */
static int luf_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                   pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = out_tan[1] = out_tan[2] = NULL;
    if (!tan[0]) return 0;
    if (luf_square_only(in[0])) return -1;
    pn_scope_push();
    pn_array *L, *U;
    lu_unpack(out[0], &L, &U);
    pn_array *db = take_rows(tan[0], pn_argsort(out[2], -1));
    pn_array *x = pn_linalg_solve_triangular(L, db, false);
    pn_array *z = mT(pn_linalg_solve_triangular(mT(U), mT(x), false));
    out_tan[0] = pn_add(mm(L, pn_tril(z, -1)), mm(pn_triu(z, 0), U));
    pn_scope_pop_keep(out_tan, 1);
    return status(out_tan[0]);
}

const pnC_primitive luf_prim = {
    .name = "LUF",
    .not_in_graphs = true, /* cuSOLVER's status words */
    .eval = {[PN_CPU] = pnK_luf_eval, [PN_GPU] = PNG_EVAL(pnG_luf_eval)},
    .vjp = luf_vjp,
    .jvp = luf_jvp,
    .vmap = decomp_vmap,
};

/* The LUF node's three outputs: LU, pivots, row indices. */
static int luf_make(const char *fn, pn_array *a, pn_array **out)
{
    char op[32];
    snprintf(op, sizeof op, "linalg::%s", fn);
    if (!pnC_inputs_ok(op, 1, &a) || check_matrix(fn, a, false)) return -1;
    int64_t m = pn_dim(a, -2), n = pn_dim(a, -1), k = m < n ? m : n;
    int64_t sp[PNC_MAX_NDIM], sr[PNC_MAX_NDIM];
    int np = out_shape(a, 2, &k, 1, sp), nr = out_shape(a, 2, &m, 1, sr);
    const int64_t *shapes[3] = {pn_shape(a), sp, sr};
    const int nds[3] = {pn_ndim(a), np, nr};
    const pn_dtype dts[3] = {pn_array_dtype(a), PN_UINT32, PN_UINT32};
    return pnC_make_multi(&luf_prim, NULL, 0, 1, &a, 3, dts, shapes, nds, out);
}

/* See ponte.h. */
int pn_linalg_lu_factor(pn_array *a, pn_array **lu, pn_array **pivots)
{
    pn_array *out[3] = {NULL, NULL, NULL};
    lu[0] = pivots[0] = NULL;
    if (luf_make("lu_factor", a, out)) return -1;
    lu[0] = out[0], pivots[0] = out[1];
    pn_release(out[2]);
    return 0;
}

/* See ponte.h. As MLX: L = tril(LU, -1)[..., :k] + eye(m, k), U = triu(LU)[..., :k, :]. */
int pn_linalg_lu(pn_array *a, pn_array **p, pn_array **l, pn_array **u)
{
    p[0] = l[0] = u[0] = NULL;
    pn_scope_push();
    pn_array *f[3] = {NULL, NULL, NULL};
    if (luf_make("lu", a, f)) return pnC_scope_return(NULL), -1;
    int64_t m = pn_dim(a, -2), n = pn_dim(a, -1), k = m < n ? m : n;
    pn_dtype t = pn_array_dtype(a);
    pn_array *out[3] = {f[2], pn_add(block(pn_tril(f[0], -1), 0, -1, 0, k), pn_eye(m, k, 0, t)),
                        block(pn_triu(f[0], 0), 0, k, 0, -1)};
    bool ok = out[1] && out[2];
    pn_scope_pop_keep(out, ok ? 3 : 0);
    if (!ok) return -1;
    p[0] = out[0], l[0] = out[1], u[0] = out[2];
    return 0;
}

/* ───────────────────────────── QR ───────────────────────────── */

/* x R^-T and x R^-1 for upper triangular R (..., k, k), through triangular solves. */
static pn_array *times_rinv_t(pn_array *x, pn_array *r)
{
    return mT(pn_linalg_solve_triangular(r, mT(x), true));
}
static pn_array *times_rinv(pn_array *x, pn_array *r)
{
    return mT(pn_linalg_solve_triangular(mT(r), mT(x), false));
}
/* tril(x) + tril(x, -1)^T: the symmetric matrix of x's lower triangle. */
static pn_array *copyltu(pn_array *x) { return pn_add(pn_tril(x, 0), mT(pn_tril(x, -1))); }

/* Reverse mode of a = Q R with m >= n (Q (..., m, n), R (..., n, n) invertible):
 * abar = (gQ + Q copyltu(M)) R^-T with M = R gR^T - gQ^T Q. gQ or gR may be NULL (zero). */
static pn_array *qr_tall_vjp(pn_array *q, pn_array *r, pn_array *gq, pn_array *gr)
{
    pn_array *M = acc(gr ? mm(r, mT(gr)) : NULL, gq ? pn_negative(mm(mT(gq), q)) : NULL);
    return times_rinv_t(acc(gq, mm(q, copyltu(M))), r);
}

/* Reverse mode. m >= n: qr_tall_vjp. m < n: a = [X | Y] with X (..., m, m) = Q U and
 * R = [U | V], V = Q^T Y, so Ybar = Q gV and Xbar is the square rule's with gQ + Y gV^T. */
static int qr_vjp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                  pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    pn_array *gq = cot[0], *gr = cot[1];
    grads[0] = NULL;
    if (!gq && !gr) return 0;
    pn_scope_push();
    int64_t m = pn_dim(in[0], -2), n = pn_dim(in[0], -1);
    pn_array *q = out[0], *r = out[1], *g;
    if (m >= n) {
        g = qr_tall_vjp(q, r, gq, gr);
    } else {
        pn_array *y = block(in[0], 0, -1, m, -1), *gv = gr ? block(gr, 0, -1, m, -1) : NULL;
        pn_array *parts[2] = {
            qr_tall_vjp(q, block(r, 0, -1, 0, m), acc(gq, gv ? mm(y, mT(gv)) : NULL),
                        gr ? block(gr, 0, -1, 0, m) : NULL),
            gv ? mm(q, gv) : pn_zeros_like(y)};
        g = pn_concatenate(parts, 2, -1);
    }
    grads[0] = g;
    pn_scope_pop_keep(grads, 1);
    return status(g);
}

/* Forward mode of a = Q R with m >= n: with B = da R^-1, C = Q^T B and W = tril(C, -1),
 * Q^T dQ = W - W^T (skew) and dR R^-1 = C - W + W^T (upper), so
 * dR = (C - W + W^T) R and dQ = B - Q (C - W + W^T). */
static void qr_tall_jvp(pn_array *q, pn_array *r, pn_array *da, pn_array **dq, pn_array **dr)
{
    pn_array *b = times_rinv(da, r), *c = mm(mT(q), b), *w = pn_tril(c, -1);
    pn_array *u = pn_add(pn_subtract(c, w), mT(w));
    *dr = mm(u, r);
    *dq = pn_subtract(b, mm(q, u));
}

/* Forward mode. m < n: (dQ, dU) from X's rule and dV = dQ^T Y + Q^T dY. */
static int qr_jvp(const pnC_node *nd, pn_array *const *in, pn_array *const *out,
                  pn_array *const *tan, pn_array **out_tan)
{
    out_tan[0] = out_tan[1] = NULL;
    pn_array *da = tan[0];
    if (!da) return 0;
    pn_scope_push();
    int64_t m = pn_dim(in[0], -2), n = pn_dim(in[0], -1);
    pn_array *q = out[0], *r = out[1];
    if (m >= n) {
        qr_tall_jvp(q, r, da, &out_tan[0], &out_tan[1]);
    } else {
        pn_array *du = NULL;
        qr_tall_jvp(q, block(r, 0, -1, 0, m), block(da, 0, -1, 0, m), &out_tan[0], &du);
        pn_array *dv = pn_add(mm(mT(out_tan[0]), block(in[0], 0, -1, m, -1)),
                              mm(mT(q), block(da, 0, -1, m, -1)));
        pn_array *parts[2] = {du, dv};
        out_tan[1] = pn_concatenate(parts, 2, -1);
    }
    pn_scope_pop_keep(out_tan, 2);
    return out_tan[0] && out_tan[1] ? 0 : -1;
}

const pnC_primitive qrf_prim = {
    .name = "QRF",
    .not_in_graphs = true, /* cuSOLVER's status words */
    .eval = {[PN_CPU] = pnK_qr_eval, [PN_GPU] = PNG_EVAL(pnG_qr_eval)},
    .vjp = qr_vjp,
    .jvp = qr_jvp,
    .vmap = decomp_vmap,
};

/* See ponte.h. */
int pn_linalg_qr(pn_array *a, pn_array **q, pn_array **r)
{
    q[0] = r[0] = NULL;
    if (!pnC_inputs_ok("linalg::qr", 1, &a) || check_matrix("qr", a, false)) return -1;
    int64_t m = pn_dim(a, -2), n = pn_dim(a, -1), k = m < n ? m : n;
    int64_t sq[PNC_MAX_NDIM], sr[PNC_MAX_NDIM];
    int nq = out_shape(a, 2, (int64_t[]){m, k}, 2, sq);
    int nr = out_shape(a, 2, (int64_t[]){k, n}, 2, sr);
    const int64_t *shapes[2] = {sq, sr};
    const int nds[2] = {nq, nr};
    const pn_dtype dts[2] = {pn_array_dtype(a), pn_array_dtype(a)};
    pn_array *out[2] = {NULL, NULL};
    if (pnC_make_multi(&qrf_prim, NULL, 0, 1, &a, 2, dts, shapes, nds, out)) return -1;
    q[0] = out[0], r[0] = out[1];
    return 0;
}

/* ───────────────────────────── pinv ───────────────────────────── */

/* See ponte.h. As MLX: V diag(1/s) U^T over the first k singular triplets, singular values at
 * or below 10 max(m, n) eps(dtype) max(s) dropped. */
pn_array *pn_linalg_pinv(pn_array *a)
{
    if (!pnC_inputs_ok("linalg::pinv", 1, &a) || check_matrix("pinv", a, false)) return NULL;
    int64_t m = pn_dim(a, -2), n = pn_dim(a, -1), k = m < n ? m : n;
    pn_dtype t = pn_array_dtype(a);
    if (k == 0) {
        int64_t shape[PNC_MAX_NDIM];
        int nd = out_shape(a, 2, (int64_t[]){n, m}, 2, shape);
        return pn_zeros(shape, nd, t);
    }
    pn_scope_push();
    pn_array *usv[3] = {NULL, NULL, NULL};
    if (pn_linalg_svd(a, true, usv)) return pnC_scope_return(NULL);
    pn_array *ut = mT(block(usv[0], 0, -1, 0, k)), *v = mT(block(usv[2], 0, k, 0, -1));
    pn_array *s = row(usv[1]);
    double eps = t == PN_FLOAT32 ? (double)FLT_EPSILON : DBL_EPSILON;
    double rcond = 10.0 * (double)(m > n ? m : n) * eps;
    pn_array *cutoff = pn_multiply(pn_scalar(rcond, t), pn_max(s, (int[]){-1}, 1, true));
    pn_array *rs = pn_where(pn_greater(s, cutoff), pn_reciprocal(s), pn_scalar(0, t));
    return pnC_scope_return(mm(pn_multiply(v, rs), ut));
}
