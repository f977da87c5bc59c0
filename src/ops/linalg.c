/* linalg.c — linear algebra ops: matmul and addmm (one GEMM primitive, batched with broadcast
 * batch dims, kernel in backend/cpu/gemm.c), diagonal (a strided view), and the composites
 * built on them: outer, inner, tensordot, einsum, trace, diag. Semantics follow mlx.core. */
#include "backend/cpu/gemm.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

#include <ctype.h>
#include <omp.h>
#include <stdlib.h>

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ───────────────────────────── GEMM primitive (matmul, addmm) ───────────────────────────── */
/* Inputs: a (..., M, K), b (..., K, N) of the output dtype, both at least 2-d, batch dims
 * broadcasting against each other; addmm adds c, already broadcast to the output shape.
 * Output (broadcast batch..., M, N) = alpha * a @ b (+ beta * c). */

typedef pnK_gemm_params gemm_params;

static int gemm_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const gemm_params *p = PNC_PARAMS(node, gemm_params);
    pn_array *o = out[0];
    int nd = o->ndim, nb = nd - 2;
    double beta = 0.0;
    if (node->nin == 3 && p->beta != 0.0) {
        if (!pnC_donate(o, in[2])) {
            if (pnC_alloc_output(o)) return -1;
            pnC_copy_strided(in[2], o);
        }
        beta = p->beta;
    } else if (pnC_alloc_output(o)) {
        return -1;
    }
    if (o->size == 0) return 0;

    int64_t M = o->shape[nd - 2], N = o->shape[nd - 1], K = in[0]->shape[in[0]->ndim - 1];
    const int64_t *bshape = o->shape;
    int64_t nbatch = pnC_shape_size(bshape, nb);
    size_t es = pn_dtype_size(o->dtype);
    char *c = pnC_data(o);
    if (K == 0) /* zeros, or beta * c */
        return pnK_gemm(o->dtype, false, false, nbatch * M, N, 0, p->alpha, NULL, 1, NULL, N, beta,
                        c, N);
    pnK_gemm_operand a, b;
    if (pnK_gemm_operand_init(&a, in[0], nb)) return -1;
    if (pnK_gemm_operand_init(&b, in[1], nb)) {
        pnK_gemm_operand_release(&a);
        return -1;
    }
    int rc = 0;

    bool b_shared = true; /* b is the same matrix for every batch */
    for (int d = 0; d < nb; d++) b_shared &= b.bstrides[d] == 0;
    if (nbatch == 1 || (b_shared && pnK_gemm_batch_folds(&a, bshape, nb, M))) {
        rc = pnK_gemm(o->dtype, a.trans, b.trans, nbatch * M, N, K, p->alpha, a.data, a.ld,
                      b.data, b.ld, beta, c, N);
    } else {
        /* Many small matrices: threads over the batch, each GEMM on one thread. Large ones:
         * one after another, each GEMM threaded. */
        bool threads = (double)M * N * K < 64.0 * 64 * 64 && (double)nbatch * M * N * K > 65536.0;
        int failed = 0;
#pragma omp parallel for schedule(static) if (threads) reduction(| : failed)
        for (int64_t i = 0; i < nbatch; i++) {
            int64_t r = i, ao = 0, bo = 0;
            for (int d = nb - 1; d >= 0; d--) {
                int64_t idx = r % bshape[d];
                r /= bshape[d];
                ao += idx * a.bstrides[d] * (int64_t)es;
                bo += idx * b.bstrides[d] * (int64_t)es;
            }
            failed |= pnK_gemm(o->dtype, a.trans, b.trans, M, N, K, p->alpha, a.data + ao, a.ld,
                               b.data + bo, b.ld, beta, c + i * M * N * es, N) != 0;
        }
        if (failed) {
            if (!pnC_failed()) pnC_fail(PN_ERR_BACKEND, "[%s] GEMM failed", node->prim->name);
            rc = -1;
        }
    }
    pnK_gemm_operand_release(&a);
    pnK_gemm_operand_release(&b);
    return rc;
}

/* x with its last two axes swapped. */
static pn_array *swap_last(pn_array *x) { return pn_swapaxes(x, -1, -2); }

extern const pnC_primitive transpose_prim; /* shape.c */

/* Whether b is a 2-d matrix laid out column by column: the transpose of a row-major matrix w
 * (linear layers multiply by w.T), lazy or evaluated. */
static bool column_major_2d(const pn_array *b)
{
    if (b->ndim != 2) return false;
    if (b->node) return b->node->prim == &transpose_prim;
    return b->buf && b->shape[0] > 1 && b->strides[0] == 1 && b->strides[1] == b->shape[0];
}

/* x^T @ y for 2-d x and y, laid out as b is: for a column-major b, computed as (y^T x)^T,
 * whose transpose (w's gradient, through the transpose's vjp) is then row-major like w
 * itself, so an optimizer step reads it without a transposing copy. */
static pn_array *t_matmul_like(pn_array *x, pn_array *y, const pn_array *b)
{
    return column_major_2d(b) ? swap_last(pn_matmul(swap_last(y), x)) : pn_matmul(swap_last(x), y);
}

static int gemm_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const gemm_params *p = PNC_PARAMS(node, gemm_params);
    for (int i = 0; i < nargs; i++) grads[i] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    pn_array *a = in[0], *b = in[1], *g = cot[0];
    pn_array *gs = p->alpha == 1.0 ? g : pn_multiply(g, pn_weak_float(p->alpha));
    bool ok = true;
    for (int i = 0; i < nargs; i++) {
        pn_array *r = NULL;
        if (argnums[i] == 0) {
            r = pnC_sum_to_shape(pn_matmul(gs, swap_last(b)), a->shape, a->ndim);
        } else if (argnums[i] == 1 && b->ndim == 2 && a->ndim > 2) {
            /* a shared b: one GEMM over the folded batch, (K, B*M) @ (B*M, N) */
            int64_t ka[2] = {-1, a->shape[a->ndim - 1]}, gn[2] = {-1, b->shape[1]};
            r = t_matmul_like(pn_reshape(a, ka, 2), pn_reshape(gs, gn, 2), b);
        } else if (argnums[i] == 1 && b->ndim == 2 && a->ndim == 2) {
            r = t_matmul_like(a, gs, b);
        } else if (argnums[i] == 1) {
            r = pnC_sum_to_shape(pn_matmul(swap_last(a), gs), b->shape, b->ndim);
        } else if (argnums[i] == 2) {
            r = p->beta == 1.0 ? pnC_alias(g) : pn_multiply(g, pn_weak_float(p->beta));
        }
        ok &= r != NULL;
        grads[i] = r;
    }
    pn_scope_pop_keep(grads, nargs);
    if (!ok) {
        for (int i = 0; i < nargs; i++) pn_release(grads[i]), grads[i] = NULL;
        return -1;
    }
    return 0;
}

static int gemm_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                    pn_array *const *tan, pn_array **out_tan)
{
    const gemm_params *p = PNC_PARAMS(node, gemm_params);
    pn_scope_push();
    pn_array *r = NULL;
    bool ok = true;
    if (tan[0]) ok &= (r = pn_matmul(tan[0], in[1])) != NULL;
    if (tan[1]) {
        pn_array *x = pn_matmul(in[0], tan[1]);
        ok &= (r = r ? pn_add(r, x) : x) != NULL;
    }
    if (r && p->alpha != 1.0) ok &= (r = pn_multiply(r, pn_weak_float(p->alpha))) != NULL;
    if (node->nin == 3 && tan[2]) {
        pn_array *y = p->beta == 1.0 ? tan[2] : pn_multiply(tan[2], pn_weak_float(p->beta));
        ok &= (r = r ? pn_add(r, y) : y) != NULL;
    }
    r = ok ? pnC_scope_return(r) : pnC_scope_return(NULL);
    out_tan[0] = r;
    return ok ? 0 : -1;
}

static int gemm_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                     pn_array **out, int *out_axes)
{
    const gemm_params *p = PNC_PARAMS(node, gemm_params);
    int rank = 0;
    bool mapped = false;
    for (int k = 0; k < node->nin; k++) {
        rank = (int)max64(rank, in[k]->ndim - (in_axes[k] >= 0));
        mapped |= in_axes[k] >= 0;
    }
    pn_scope_push();
    pn_array *x[3];
    for (int k = 0; k < node->nin; k++) x[k] = pnC_batch_front(in[k], in_axes[k], rank);
    out[0] = node->nin == 2 ? pn_matmul(x[0], x[1]) : pn_addmm(x[2], x[0], x[1], p->alpha, p->beta);
    out_axes[0] = mapped ? 0 : -1;
    pn_scope_pop_keep(out, 1);
    return out[0] ? 0 : -1;
}

/* matmul and addmm: one kernel and one set of derivatives, told apart by their input count */
#define GEMM_PRIM(NAME)                                                                        \
    {                                                                                          \
        .name = NAME, .eval = {[PN_CPU] = gemm_eval, [PN_GPU] = PNG_EVAL(pnG_gemm_eval)},      \
        .vjp = gemm_vjp, .jvp = gemm_jvp, .vmap = gemm_vmap                                    \
    }
const pnC_primitive matmul_prim = GEMM_PRIM("Matmul"), addmm_prim = GEMM_PRIM("AddMM");
#undef GEMM_PRIM

/* ───────────────────────────── matmul and addmm ───────────────────────────── */

/* The operands of a matrix product, prepared as MLX does: 1-d operands become (1, K) and
 * (K, 1), inner extents checked, both cast to the (inexact) result dtype. Writes the full
 * output shape (broadcast batch..., M, N) to shape and returns its rank; -1 with an error.
 * Runs inside the caller's scope. */
static int prepare_product(const char *op, pn_array *a, pn_array *b, pn_dtype dtype,
                           pn_array **pa, pn_array **pb, int64_t *shape)
{
    char s1[256], s2[256];
    if (pn_ndim(a) == 0 || pn_ndim(b) == 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Got 0 dimension input. Inputs must have "
                        "at least one dimension.", op), -1;
    if (pn_ndim(a) == 1) a = pn_expand_dims(a, (int[]){0}, 1);
    if (pn_ndim(b) == 1) b = pn_expand_dims(b, (int[]){1}, 1);
    if (!a || !b) return -1;
    int na = pn_ndim(a), nb = pn_ndim(b);
    const int64_t *as = pn_shape(a), *bs = pn_shape(b);
    if (as[na - 1] != bs[nb - 2])
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[%s] Last dimension of first input with shape %s "
                        "must match second to last dimension of second input with shape %s.",
                        op, pnC_shape_str(as, na, s1, sizeof s1),
                        pnC_shape_str(bs, nb, s2, sizeof s2)),
               -1;
    if (!pnC_is_inexact(dtype))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Only inexact types are supported but %s and "
                        "%s were provided which results in %s, which is not a floating point type.",
                        op, pn_dtype_name(pn_array_dtype(a)), pn_dtype_name(pn_array_dtype(b)),
                        pn_dtype_name(dtype)), -1;
    if (pn_array_dtype(a) != dtype) a = pn_astype(a, dtype);
    if (pn_array_dtype(b) != dtype) b = pn_astype(b, dtype);
    int n = pnC_broadcast_shapes(op, as, na - 2, bs, nb - 2, shape);
    if (n < 0 || !a || !b) return -1;
    shape[n] = as[na - 2];
    shape[n + 1] = bs[nb - 1];
    *pa = a, *pb = b;
    return n + 2;
}

/* Drops the axes a 1-d operand added: the row axis (a was 1-d), the column axis (b was). */
static pn_array *squeeze_vectors(pn_array *r, bool a_vec, bool b_vec)
{
    int axes[2], n = 0;
    if (a_vec) axes[n++] = -2;
    if (b_vec) axes[n++] = -1;
    return n && r ? pn_squeeze(r, axes, n) : r;
}

/* See ponte.h. */
pn_array *pn_matmul(pn_array *a, pn_array *b)
{
    pn_array *ins[2] = {a, b};
    if (!pnC_inputs_ok("matmul", 2, ins)) return NULL;
    pn_dtype dtype = pnC_result_type(2, ins);
    pn_scope_push();
    pn_array *x, *y, *r = NULL;
    int64_t shape[PNC_MAX_NDIM];
    int nd = prepare_product("matmul", a, b, dtype, &x, &y, shape);
    if (nd >= 0) {
        gemm_params p = {1.0, 0.0};
        r = pnC_make(&matmul_prim, &p, sizeof p, 2, (pn_array *[]){x, y}, dtype, shape, nd);
        r = squeeze_vectors(r, pn_ndim(a) == 1, pn_ndim(b) == 1);
    }
    return pnC_scope_return(r);
}

/* See ponte.h. */
pn_array *pn_addmm(pn_array *c, pn_array *a, pn_array *b, double alpha, double beta)
{
    pn_array *ins[3] = {a, b, c};
    if (!pnC_inputs_ok("addmm", 3, ins)) return NULL;
    pn_dtype dtype = pnC_result_type(3, ins);
    pn_scope_push();
    pn_array *r = NULL;
    if (dtype == PN_COMPLEX64) { /* as MLX: the composite */
        pn_array *ab = pn_matmul(a, b);
        r = pn_add(pn_multiply(ab, pn_weak_float(alpha)), pn_multiply(c, pn_weak_float(beta)));
        return pnC_scope_return(r);
    }
    pn_array *x, *y;
    int64_t shape[PNC_MAX_NDIM], adj[PNC_MAX_NDIM], cb[PNC_MAX_NDIM];
    bool a_vec = pn_ndim(a) == 1, b_vec = pn_ndim(b) == 1;
    int nd = prepare_product("addmm", a, b, dtype, &x, &y, shape);
    if (nd < 0) return pnC_scope_return(NULL);
    /* c broadcasts to the output as the user sees it (without the vector axes) */
    int nadj = 0;
    for (int i = 0; i < nd; i++)
        if (!((a_vec && i == nd - 2) || (b_vec && i == nd - 1))) adj[nadj++] = shape[i];
    int ncb = pnC_broadcast_shapes("addmm", pn_shape(c), pn_ndim(c), adj, nadj, cb);
    if (ncb < 0) return pnC_scope_return(NULL);
    if (ncb != nadj || memcmp(cb, adj, sizeof(int64_t) * nadj)) {
        char s1[256], s2[256];
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[addmm] input c with shape %s must broadcast to the "
                 "output shape %s", pnC_shape_str(pn_shape(c), pn_ndim(c), s1, sizeof s1),
                 pnC_shape_str(adj, nadj, s2, sizeof s2));
        return pnC_scope_return(NULL);
    }
    /* c with the vector axes put back, broadcast to the full output shape */
    int64_t cs[PNC_MAX_NDIM];
    int cn = pn_ndim(c), lead = nadj - cn, k = 0;
    for (int i = 0; i < nd; i++) {
        if ((a_vec && i == nd - 2) || (b_vec && i == nd - 1)) cs[i] = 1;
        else cs[i] = k < lead ? (k++, 1) : pn_shape(c)[k++ - lead];
    }
    pn_array *cc = pn_array_dtype(c) == dtype ? c : pn_astype(c, dtype);
    cc = pn_broadcast_to(pn_reshape(cc, cs, nd), shape, nd);
    if (cc) {
        gemm_params p = {alpha, beta};
        r = pnC_make(&addmm_prim, &p, sizeof p, 3, (pn_array *[]){x, y, cc}, dtype, shape, nd);
        r = squeeze_vectors(r, a_vec, b_vec);
    }
    return pnC_scope_return(r);
}

/* ───────────────────────────── products built on matmul ───────────────────────────── */

/* See ponte.h. */
pn_array *pn_outer(pn_array *a, pn_array *b)
{
    pn_array *ins[2] = {a, b};
    if (!pnC_inputs_ok("outer", 2, ins)) return NULL;
    pn_scope_push();
    int64_t s[2] = {pn_size(a), 1};
    return pnC_scope_return(pn_multiply(pn_reshape(a, s, 2), pn_flatten(b, 0, -1)));
}

/* See ponte.h. */
pn_array *pn_tensordot(pn_array *a, pn_array *b, const int *axes_a, const int *axes_b, int n)
{
    pn_array *ins[2] = {a, b};
    if (!pnC_inputs_ok("tensordot", 2, ins)) return NULL;
    int na = pn_ndim(a), nb = pn_ndim(b), xa[PNC_MAX_NDIM], xb[PNC_MAX_NDIM];
    if (n < 0 || n > na || n > nb)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[tensordot] Got %d axes to contract for inputs "
                        "with %d and %d dimensions.", n, na, nb);
    if (n > 0 && (pnC_axes("tensordot", axes_a, n, na, xa) < 0 ||
                  pnC_axes("tensordot", axes_b, n, nb, xb) < 0))
        return NULL;
    const int64_t *as = pn_shape(a), *bs = pn_shape(b);
    int64_t csize = 1, size1 = 1, size2 = 1, rshape[PNC_MAX_NDIM];
    for (int i = 0; i < n; i++) {
        if (as[xa[i]] != bs[xb[i]])
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[tensordot] a and b must have the same "
                            "shape on the contracted axes.");
        csize *= as[xa[i]];
    }
    bool ca[PNC_MAX_NDIM] = {0}, cb[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < n; i++) ca[xa[i]] = cb[xb[i]] = true;
    int t1[PNC_MAX_NDIM], t2[PNC_MAX_NDIM], n1 = 0, n2 = 0, nr = 0;
    for (int i = 0; i < na; i++)
        if (!ca[i]) t1[n1++] = i, size1 *= as[i], rshape[nr++] = as[i];
    for (int i = 0; i < n; i++) t1[n1++] = xa[i], t2[n2++] = xb[i];
    for (int i = 0; i < nb; i++)
        if (!cb[i]) t2[n2++] = i, size2 *= bs[i], rshape[nr++] = bs[i];
    pn_scope_push();
    pn_array *x = pn_reshape(pn_transpose(a, t1, na), (int64_t[]){size1, csize}, 2);
    pn_array *y = pn_reshape(pn_transpose(b, t2, nb), (int64_t[]){csize, size2}, 2);
    return pnC_scope_return(pn_reshape(pn_matmul(x, y), rshape, nr));
}

/* See ponte.h. */
pn_array *pn_tensordot_n(pn_array *a, pn_array *b, int n)
{
    pn_array *ins[2] = {a, b};
    if (!pnC_inputs_ok("tensordot", 2, ins)) return NULL;
    if (n < 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[tensordot] axis must be greater or equal to 0.");
    if (n > pn_ndim(a) || n > pn_ndim(b))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[tensordot] axis must be less than the number "
                        "of dimensions of a and b.");
    int xa[PNC_MAX_NDIM], xb[PNC_MAX_NDIM];
    for (int i = 0; i < n; i++) xa[i] = i - n, xb[i] = i;
    return pn_tensordot(a, b, xa, xb, n);
}

/* See ponte.h. */
pn_array *pn_inner(pn_array *a, pn_array *b)
{
    pn_array *ins[2] = {a, b};
    if (!pnC_inputs_ok("inner", 2, ins)) return NULL;
    if (pn_ndim(a) == 0 || pn_ndim(b) == 0) return pn_multiply(a, b);
    if (pn_dim(a, -1) != pn_dim(b, -1))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[inner] a and b must have the same last "
                        "dimension.");
    return pn_tensordot(a, b, (int[]){-1}, (int[]){-1}, 1);
}

/* ───────────────────────────── diagonal ───────────────────────────── */

typedef struct diag_params {
    int offset, axis1, axis2; /* axes normalized */
} diag_params;

static int diagonal_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const diag_params *p = PNC_PARAMS(node, diag_params);
    const pn_array *a = in[0];
    pn_array *o = out[0];
    int64_t st[PNC_MAX_NDIM], off = a->offset;
    int j = 0;
    for (int k = 0; k < a->ndim; k++)
        if (k != p->axis1 && k != p->axis2) st[j++] = a->strides[k];
    st[j] = a->strides[p->axis1] + a->strides[p->axis2];
    if (o->shape[o->ndim - 1] > 0)
        off += max64(-p->offset, 0) * a->strides[p->axis1] +
               max64(p->offset, 0) * a->strides[p->axis2];
    pnC_set_view(o, a, off, st);
    return 0;
}

/* x (..., d) placed on diagonal `offset` of (..., n1, n2) matrices, zeros elsewhere. */
static pn_array *diag_embed(pn_array *x, int64_t n1, int64_t n2, int offset)
{
    int nd = pn_ndim(x);
    int64_t d = pn_shape(x)[nd - 1], off1 = max64(-offset, 0), shape[PNC_MAX_NDIM];
    memcpy(shape, pn_shape(x), sizeof(int64_t) * (nd - 1));
    shape[nd - 1] = n1, shape[nd] = n2;
    pn_dtype dt = pn_array_dtype(x);
    if (d == 0) return pn_zeros(shape, nd + 1, dt);
    int ax = nd - 1;
    pn_array *xp = pn_pad(x, &ax, &off1, (int64_t[]){n1 - off1 - d}, 1, NULL, PN_PAD_CONSTANT);
    pn_array *mask = pn_eye(n1, n2, offset, PN_BOOL);
    return pn_where(mask, pn_expand_dims(xp, (int[]){-1}, 1), pn_scalar(0.0, dt));
}

static int diagonal_vjp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                        pn_array *const *cot, const int *argnums, int nargs, pn_array **grads)
{
    const diag_params *p = PNC_PARAMS(node, diag_params);
    grads[0] = NULL;
    if (!cot[0]) return 0;
    pn_scope_push();
    const pn_array *a = in[0];
    int nd = a->ndim, perm[PNC_MAX_NDIM], j = 0;
    for (int k = 0; k < nd; k++)
        perm[k] = k == p->axis1 ? nd - 2 : k == p->axis2 ? nd - 1 : j++;
    pn_array *g = diag_embed(cot[0], a->shape[p->axis1], a->shape[p->axis2], p->offset);
    grads[0] = pnC_scope_return(pn_transpose(g, perm, nd));
    return grads[0] ? 0 : -1;
}

static int diagonal_jvp(const pnC_node *node, pn_array *const *in, pn_array *const *out,
                        pn_array *const *tan, pn_array **out_tan)
{
    const diag_params *p = PNC_PARAMS(node, diag_params);
    out_tan[0] = tan[0] ? pn_diagonal(tan[0], p->offset, p->axis1, p->axis2) : NULL;
    return tan[0] && !out_tan[0] ? -1 : 0;
}

static int diagonal_vmap(const pnC_node *node, pn_array *const *in, const int *in_axes,
                         pn_array **out, int *out_axes)
{
    const diag_params *p = PNC_PARAMS(node, diag_params);
    int shift = in_axes[0] >= 0;
    pn_scope_push();
    out[0] = pn_diagonal(pnC_batch_front(in[0], in_axes[0], 0), p->offset, p->axis1 + shift,
                         p->axis2 + shift);
    out_axes[0] = shift ? 0 : -1;
    pn_scope_pop_keep(out, 1);
    return out[0] ? 0 : -1;
}

const pnC_primitive diagonal_prim = {
    .name = "Diagonal",
    .eval = {[PN_CPU] = diagonal_eval, [PN_GPU] = PNG_EVAL(diagonal_eval)},
    .vjp = diagonal_vjp,
    .jvp = diagonal_jvp,
    .vmap = diagonal_vmap,
};

/* Checks the axes of a diagonal-like op; normalized into *x1, *x2. Returns 0 or -1. */
static int diag_axes(const char *op, pn_array *a, int axis1, int axis2, int *x1, int *x2)
{
    int nd = pn_ndim(a);
    if (nd < 2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Array must have at least two dimensions, "
                        "but got %d dimensions.", op, nd), -1;
    *x1 = axis1 < 0 ? axis1 + nd : axis1;
    *x2 = axis2 < 0 ? axis2 + nd : axis2;
    if (*x1 < 0 || *x1 >= nd)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Invalid axis1 %d for array with %d "
                        "dimensions.", op, axis1, nd), -1;
    if (*x2 < 0 || *x2 >= nd)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Invalid axis2 %d for array with %d "
                        "dimensions.", op, axis2, nd), -1;
    if (*x1 == *x2)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] axis1 and axis2 cannot be the same axis",
                        op), -1;
    return 0;
}

/* See ponte.h. */
pn_array *pn_diagonal(pn_array *a, int offset, int axis1, int axis2)
{
    if (!pnC_inputs_ok("diagonal", 1, &a)) return NULL;
    diag_params p = {offset, 0, 0};
    if (diag_axes("diagonal", a, axis1, axis2, &p.axis1, &p.axis2)) return NULL;
    int nd = pn_ndim(a), j = 0;
    const int64_t *as = pn_shape(a);
    int64_t shape[PNC_MAX_NDIM];
    for (int k = 0; k < nd; k++)
        if (k != p.axis1 && k != p.axis2) shape[j++] = as[k];
    int64_t d = min64(as[p.axis1] - max64(-(int64_t)offset, 0), as[p.axis2] - max64(offset, 0));
    shape[j] = max64(d, 0);
    return pnC_make(&diagonal_prim, &p, sizeof p, 1, &a, pn_array_dtype(a), shape, nd - 1);
}

/* See ponte.h. */
pn_array *pn_diag(pn_array *a, int k)
{
    if (!pnC_inputs_ok("diag", 1, &a)) return NULL;
    if (pn_ndim(a) == 2) return pn_diagonal(a, k, 0, 1);
    if (pn_ndim(a) != 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[diag] array must be 1-D or 2-D");
    int64_t n = pn_size(a) + (k < 0 ? -(int64_t)k : k);
    pn_scope_push();
    return pnC_scope_return(diag_embed(a, n, n, k));
}

/* See ponte.h. */
pn_array *pn_trace(pn_array *a, int offset, int axis1, int axis2)
{
    if (!pnC_inputs_ok("trace", 1, &a)) return NULL;
    int x1, x2;
    if (diag_axes("trace", a, axis1, axis2, &x1, &x2)) return NULL;
    pn_scope_push();
    pn_array *r = pn_sum(pn_diagonal(a, offset, x1, x2), (int[]){-1}, 1, false);
    if (r && pn_array_dtype(r) != pn_array_dtype(a)) r = pn_astype(r, pn_array_dtype(a));
    return pnC_scope_return(r);
}

/* ───────────────────────────── einsum ───────────────────────────── */
/* numpy's grammar: "ab,bc->ac", implicit output (letters used once, sorted), "..." for
 * broadcast leading axes, repeated letters in one operand for diagonals, size-1 extents
 * broadcasting. Each operand first loses its repeated letters (diagonal) and the letters no
 * one else needs (sum); then operands are contracted left to right, each pair through one
 * batched matmul (or a broadcast multiply when the pair contracts nothing). */

#define EIN_MAX_TERMS (PNC_MAX_OPS * 8)

typedef struct ein_term {
    char s[PNC_MAX_NDIM + 1]; /* one letter per axis */
    int n;
} ein_term;

static bool term_has(const ein_term *t, char c) { return memchr(t->s, c, t->n) != NULL; }
static int term_find(const ein_term *t, char c)
{
    const char *p = memchr(t->s, c, t->n);
    return p ? (int)(p - t->s) : -1;
}

/* Removes axes listed (ascending) from x's term by summing them. */
static pn_array *ein_sum_axes(pn_array *x, ein_term *t, const int *axes, int n)
{
    if (n == 0) return x;
    for (int i = n - 1; i >= 0; i--) {
        memmove(t->s + axes[i], t->s + axes[i] + 1, t->n - axes[i] - 1);
        t->n--;
    }
    return pn_sum(x, axes, n, false);
}

/* Parses one subscript (no commas) into t, expanding "..." to `ell` letters taken from the
 * end of `spare`. For an operand, ell < 0 means "as many as the operand needs" (ndim given);
 * the length used is returned through *ell_out. Returns 0 or -1 with an error. */
static int ein_parse_term(const char *s, size_t len, int ndim, int ell, const char *spare,
                          int nspare, ein_term *t, int *ell_out, int operand)
{
    int before = 0, after = 0;
    bool have = false;
    for (size_t i = 0; i < len; i++) {
        if (isalpha((unsigned char)s[i])) {
            have ? after++ : before++;
            continue;
        }
        if (s[i] != '.' || i + 2 >= len || s[i + 1] != '.' || s[i + 2] != '.')
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] Subscripts must be letters, but "
                            "got '%c'.", s[i]), -1;
        if (have)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] Only one ellipsis per subscript "
                            "is allowed but found more in '%.*s'.", (int)len, s), -1;
        have = true;
        i += 2;
    }
    int e = 0;
    if (have) {
        e = ell >= 0 ? ell : ndim - before - after;
        if (e < 0)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] Operand %d with %d dimensions has "
                            "insufficient dimensions for subscript '%.*s'.", operand, ndim,
                            (int)len, s), -1;
        if (e > nspare)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] Too many dimensions under the "
                            "ellipsis."), -1;
    }
    if (before + after + e > PNC_MAX_NDIM)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] Too many subscripts."), -1;
    t->n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            memcpy(t->s + t->n, spare + nspare - e, e);
            t->n += e;
            i += 2;
        } else {
            t->s[t->n++] = s[i];
        }
    }
    t->s[t->n] = 0;
    if (ell_out) *ell_out = have ? e : -1;
    return 0;
}

/* Contracts x (term tx) with y (term ty), keeping the letters in `keep`. */
static pn_array *ein_pair(pn_array *x, ein_term *tx, pn_array *y, ein_term *ty,
                          const bool *keep, const int64_t *dims)
{
    /* letters only one side has and nobody needs go first */
    int sx[PNC_MAX_NDIM], sy[PNC_MAX_NDIM], nsx = 0, nsy = 0;
    for (int i = 0; i < tx->n; i++)
        if (!keep[(unsigned char)tx->s[i]] && !term_has(ty, tx->s[i])) sx[nsx++] = i;
    for (int i = 0; i < ty->n; i++)
        if (!keep[(unsigned char)ty->s[i]] && !term_has(tx, ty->s[i])) sy[nsy++] = i;
    x = ein_sum_axes(x, tx, sx, nsx);
    y = ein_sum_axes(y, ty, sy, nsy);
    if (!x || !y) return NULL;

    int bx[PNC_MAX_NDIM], cx[PNC_MAX_NDIM], kx[PNC_MAX_NDIM], nbt = 0, nc = 0, nk = 0;
    int by[PNC_MAX_NDIM], ky[PNC_MAX_NDIM], cy[PNC_MAX_NDIM], ncy = 0;
    for (int i = 0; i < tx->n; i++) {
        int j = term_find(ty, tx->s[i]);
        if (j < 0) cx[nc++] = i;
        else if (keep[(unsigned char)tx->s[i]]) bx[nbt] = i, by[nbt++] = j;
        else kx[nk] = i, ky[nk++] = j;
    }
    for (int i = 0; i < ty->n; i++)
        if (!term_has(tx, ty->s[i])) cy[ncy++] = i;

    ein_term r = {.n = 0};
    if (nk == 0) {
        /* nothing contracted: broadcast multiply in the order x's letters, then y's new ones */
        int perm[PNC_MAX_NDIM], np = 0;
        int64_t ys[PNC_MAX_NDIM];
        r = *tx;
        for (int i = 0; i < ncy; i++) r.s[r.n++] = ty->s[cy[i]];
        for (int i = 0; i < r.n; i++) {
            int j = term_find(ty, r.s[i]);
            if (j >= 0) perm[np++] = j;
            ys[i] = j >= 0 ? pn_shape(y)[j] : 1;
        }
        int64_t xs[PNC_MAX_NDIM];
        for (int i = 0; i < r.n; i++) xs[i] = i < tx->n ? pn_shape(x)[i] : 1;
        y = pn_reshape(pn_transpose(y, perm, np), ys, r.n);
        x = pn_reshape(x, xs, r.n);
        *tx = r;
        return pn_multiply(x, y);
    }
    /* batched tensordot: x -> (B..., CX, K), y -> (B..., K, CY), size-1 extents broadcast */
    int px[PNC_MAX_NDIM], py[PNC_MAX_NDIM], n = 0, m = 0;
    int64_t xs[PNC_MAX_NDIM], ys[PNC_MAX_NDIM], xr[PNC_MAX_NDIM], yr[PNC_MAX_NDIM],
        os[PNC_MAX_NDIM];
    int64_t csz = 1, ksz = 1, cysz = 1;
    for (int i = 0; i < nbt; i++) {
        int64_t d = dims[(unsigned char)tx->s[bx[i]]];
        px[n] = bx[i], xs[n++] = d;
        py[m] = by[i], ys[m++] = d;
        xr[i] = yr[i] = os[i] = d;
        r.s[r.n++] = tx->s[bx[i]];
    }
    for (int i = 0; i < nc; i++) {
        px[n] = cx[i], xs[n++] = pn_shape(x)[cx[i]];
        csz *= pn_shape(x)[cx[i]];
        os[r.n] = pn_shape(x)[cx[i]];
        r.s[r.n++] = tx->s[cx[i]];
    }
    for (int i = 0; i < nk; i++) {
        int64_t d = dims[(unsigned char)tx->s[kx[i]]];
        px[n] = kx[i], xs[n++] = d;
        py[m] = ky[i], ys[m++] = d;
        ksz *= d;
    }
    for (int i = 0; i < ncy; i++) {
        py[m] = cy[i], ys[m++] = pn_shape(y)[cy[i]];
        cysz *= pn_shape(y)[cy[i]];
        os[r.n] = pn_shape(y)[cy[i]];
        r.s[r.n++] = ty->s[cy[i]];
    }
    xr[nbt] = csz, xr[nbt + 1] = ksz;
    yr[nbt] = ksz, yr[nbt + 1] = cysz;
    x = pn_reshape(pn_broadcast_to(pn_transpose(x, px, n), xs, n), xr, nbt + 2);
    y = pn_reshape(pn_broadcast_to(pn_transpose(y, py, m), ys, m), yr, nbt + 2);
    *tx = r;
    return pn_reshape(pn_matmul(x, y), os, r.n);
}

/* An einsum's parsed and checked subscripts: the operands' terms (as written, "..." expanded),
 * the output term and every letter's extent. */
typedef struct ein_spec {
    int n;
    ein_term terms[EIN_MAX_TERMS], out;
    int64_t dims[256];
} ein_spec;

/* Parses and checks subscripts against the n operands into sp. 0, or -1 with an error. */
static int ein_parse(const char *subscripts, pn_array *const *operands, int n, ein_spec *sp)
{
    /* strip spaces */
    size_t len = strlen(subscripts);
    char *buf = malloc(len + 1);
    if (!buf) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[einsum] out of memory");
    size_t bl = 0;
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)subscripts[i])) buf[bl++] = subscripts[i];
    buf[bl] = 0;
    int rc = -1;
    ein_term *terms = sp->terms, *outt = &sp->out;
    int64_t *dims = sp->dims;
    memset(dims, 0, sizeof sp->dims);
    sp->n = n;
    bool used[256] = {0};
    int count[256] = {0};

    char *arrow = strstr(buf, "->");
    size_t lhs_len = arrow ? (size_t)(arrow - buf) : bl;
    /* split the inputs on commas (an empty subscript is a scalar operand) */
    const char *starts[EIN_MAX_TERMS];
    size_t lens[EIN_MAX_TERMS];
    int nterms = 0;
    for (size_t s = 0;;) {
        size_t e = s;
        while (e < lhs_len && buf[e] != ',') e++;
        if (nterms == EIN_MAX_TERMS) {
            pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] Too many operands.");
            goto done;
        }
        starts[nterms] = buf + s, lens[nterms++] = e - s;
        if (e >= lhs_len) break;
        s = e + 1;
    }
    if (nterms != n) {
        pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] Number of operands, %d, does not match number "
                 "of input subscripts, %d", n, nterms);
        goto done;
    }
    for (size_t i = 0; i < bl; i++) used[(unsigned char)buf[i]] = true;
    char spare[52];
    int nspare = 0;
    for (int c = 'a'; c <= 'z'; c++)
        if (!used[c]) spare[nspare++] = (char)c;
    for (int c = 'A'; c <= 'Z'; c++)
        if (!used[c]) spare[nspare++] = (char)c;

    int max_ell = -1;
    for (int i = 0; i < n; i++) {
        int e;
        if (ein_parse_term(starts[i], lens[i], pn_ndim(operands[i]), -1, spare, nspare, &terms[i],
                           &e, i))
            goto done;
        if (e > max_ell) max_ell = e;
    }
    if (arrow) {
        const char *rhs = arrow + 2;
        if (ein_parse_term(rhs, strlen(rhs), 0, max_ell < 0 ? 0 : max_ell, spare, nspare, outt,
                           NULL, -1))
            goto done;
    } else { /* implicit: the ellipsis first, then letters used once, sorted */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < terms[i].n; j++) count[(unsigned char)terms[i].s[j]]++;
        outt->n = 0;
        if (max_ell > 0) memcpy(outt->s, spare + nspare - max_ell, max_ell), outt->n = max_ell;
        for (int c = 'A'; c <= 'z'; c++)
            if (isalpha(c) && count[c] == 1 && used[c]) outt->s[outt->n++] = (char)c;
        outt->s[outt->n] = 0;
    }
    for (int i = 0; i < outt->n; i++)
        if (memchr(outt->s, outt->s[i], i)) {
            pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] Repeat indices not allowed in output.");
            goto done;
        }
    /* extents: equal for repeats within an operand; size 1 broadcasts across operands */
    for (int i = 0; i < n; i++) {
        const int64_t *sh = pn_shape(operands[i]);
        if (terms[i].n != pn_ndim(operands[i])) {
            pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] Invalid number of subscripts %d for input "
                     "%d with %d dimensions.", terms[i].n, i, pn_ndim(operands[i]));
            goto done;
        }
        for (int j = 0; j < terms[i].n; j++) {
            int first = term_find(&terms[i], terms[i].s[j]);
            if (first < j && sh[first] != sh[j]) {
                pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] Dimensions of repeated subscripts do "
                         "not have the same size (%lld != %lld).", (long long)sh[first],
                         (long long)sh[j]);
                goto done;
            }
        }
    }
    bool seen[256] = {0};
    for (int i = 0; i < n; i++) {
        const int64_t *sh = pn_shape(operands[i]);
        for (int j = 0; j < terms[i].n; j++) {
            unsigned char c = (unsigned char)terms[i].s[j];
            if (!seen[c]) {
                seen[c] = true, dims[c] = sh[j];
            } else if (sh[j] != 1 && dims[c] != 1 && dims[c] != sh[j]) {
                char s1[256];
                pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] Cannot broadcast dimension %d of input "
                         "%d with shape %s to size %lld.", j, i,
                         pnC_shape_str(sh, pn_ndim(operands[i]), s1, sizeof s1),
                         (long long)dims[c]);
                goto done;
            } else {
                dims[c] = max64(dims[c], sh[j]);
            }
        }
    }
    for (int i = 0; i < outt->n; i++)
        if (!seen[(unsigned char)outt->s[i]]) {
            pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] Output subscript '%c' does not appear in "
                     "any input.", outt->s[i]);
            goto done;
        }

    rc = 0;
done:
    free(buf);
    return rc;
}

/* ─────────── the contraction path ─────────── */
/* MLX's greedy path (numpy's einsum_path with optimize="greedy", after opt_einsum): with three
 * or more operands, repeatedly contract the pair whose result removes the most elements
 * (inputs' sizes minus the result's), the cheaper one on a tie, the first found on a second
 * tie; pairs sharing no letter only when no other pair is left. A pair is skipped when its
 * result would be larger than the largest operand or output, or when it would take the path's
 * cost past the naive cost; when no pair is left, one step contracts all that remain. Costs
 * count a term's elements times (the operands less one, at least one, plus one when letters
 * are summed); a scaling is a count of letters. Sets and sizes are over the terms as written
 * (repeated letters once in a set, every time in the largest-operand bound). */

typedef uint64_t ein_set; /* a bit per letter: a-z 0..25, A-Z 26..51 */

typedef struct ein_path {
    int nsteps;
    int start[EIN_MAX_TERMS + 1]; /* step i's positions: pos[start[i] .. start[i + 1]) */
    int pos[3 * EIN_MAX_TERMS];
    uint64_t naive_cost, cost;
    int naive_scaling, scaling;
} ein_path;

static int ein_bit(char c) { return c >= 'a' ? c - 'a' : 26 + c - 'A'; }

static ein_set ein_set_of(const ein_term *t)
{
    ein_set s = 0;
    for (int i = 0; i < t->n; i++) s |= (ein_set)1 << ein_bit(t->s[i]);
    return s;
}

/* The elements of a term over the letters of s (extents bdims by bit). */
static uint64_t ein_size(ein_set s, const uint64_t *bdims)
{
    uint64_t n = 1;
    for (int b = 0; b < 52; b++)
        if (s >> b & 1) n *= bdims[b];
    return n;
}

/* The cost of one step over the letter set `all` of k operands whose result keeps `out`. */
static uint64_t ein_cost(ein_set all, ein_set out, int k, const uint64_t *bdims)
{
    uint64_t factor = (uint64_t)(k - 1 > 1 ? k - 1 : 1) + ((all & ~out) != 0);
    return ein_size(all, bdims) * factor;
}

static void ein_add_step(ein_path *p, const int *pos, int k)
{
    int at = p->start[p->nsteps];
    memcpy(p->pos + at, pos, sizeof *pos * (size_t)k);
    p->start[++p->nsteps] = at + k;
}

typedef struct ein_candidate {
    int64_t removed; /* the inputs' elements less the result's (may be negative) */
    uint64_t cost;
    ein_set out;
    int x, y; /* positions, x < y */
} ein_candidate;

/* The path of sp's contraction into p. 0, or -1 (out of memory). */
static int ein_greedy_path(const ein_spec *sp, ein_path *p)
{
    int n = sp->n;
    uint64_t bdims[52] = {0};
    for (int c = 0; c < 256; c++)
        if (isalpha(c) && sp->dims[c]) bdims[ein_bit((char)c)] = (uint64_t)sp->dims[c];
    ein_set in[EIN_MAX_TERMS], out = ein_set_of(&sp->out), all = 0;
    uint64_t limit = 1; /* the largest operand or output, repeated letters counted each time */
    for (int k = 0; k < sp->out.n; k++) limit *= bdims[ein_bit(sp->out.s[k])];
    for (int i = 0; i < n; i++) {
        in[i] = ein_set_of(&sp->terms[i]);
        all |= in[i];
        uint64_t sz = 1;
        for (int k = 0; k < sp->terms[i].n; k++) sz *= bdims[ein_bit(sp->terms[i].s[k])];
        if (sz > limit) limit = sz;
    }
    p->nsteps = 0;
    p->start[0] = 0;
    p->naive_cost = ein_cost(all, out, n, bdims);
    p->naive_scaling = __builtin_popcountll(all);
    int every[EIN_MAX_TERMS];
    for (int i = 0; i < n; i++) every[i] = i;
    if (n <= 2) {
        ein_add_step(p, every, n);
        p->cost = p->naive_cost, p->scaling = p->naive_scaling;
        return 0;
    }
    size_t cap = (size_t)n * (size_t)n * 2;
    ein_candidate *cand = malloc(cap * sizeof *cand);
    if (!cand) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[einsum] out of memory");
    int ncand = 0, m = n, first = 0; /* pairs (i, j) with j >= first are new this round */
    uint64_t cost = 0;
    int scaling = 0;
    for (int round = 0; round < n - 1; round++) {
        for (int pass = 0; pass < 2; pass++) { /* pass 0: pairs sharing a letter; 1: the rest */
            if (pass == 1 && ncand > 0) break;
            for (int i = 0; i < m; i++)
                for (int j = (i + 1 > first ? i + 1 : first); j < m; j++) {
                    if (pass == 0 && !(in[i] & in[j])) continue;
                    ein_set both = in[i] | in[j], others = out;
                    for (int k = 0; k < m; k++)
                        if (k != i && k != j) others |= in[k];
                    ein_set res = both & others;
                    uint64_t rsize = ein_size(res, bdims);
                    if (rsize > limit) continue;
                    uint64_t c = ein_cost(both, res, 2, bdims);
                    if (cost + c > p->naive_cost) continue;
                    cand[ncand++] = (ein_candidate){
                        (int64_t)(ein_size(in[i], bdims) + ein_size(in[j], bdims) - rsize), c, res, i, j};
                }
        }
        if (ncand == 0) { /* one step over what remains */
            ein_set rest = 0;
            for (int i = 0; i < m; i++) rest |= in[i];
            ein_add_step(p, every, m);
            cost += ein_cost(rest, out, m, bdims);
            if (__builtin_popcountll(rest) > scaling) scaling = __builtin_popcountll(rest);
            break;
        }
        int b = 0;
        for (int k = 1; k < ncand; k++)
            if (cand[k].removed > cand[b].removed ||
                (cand[k].removed == cand[b].removed && cand[k].cost < cand[b].cost))
                b = k;
        ein_candidate best = cand[b];
        int dims_of = __builtin_popcountll(in[best.x] | in[best.y]);
        if (dims_of > scaling) scaling = dims_of;
        ein_add_step(p, (int[2]){best.x, best.y}, 2);
        /* the pair leaves, its result joins at the end */
        memmove(in + best.y, in + best.y + 1, sizeof *in * (size_t)(m - best.y - 1));
        memmove(in + best.x, in + best.x + 1, sizeof *in * (size_t)(m - best.x - 1));
        m -= 2;
        in[m++] = best.out;
        /* candidates of other pairs stay (their figures as computed), renumbered */
        int kept = 0;
        for (int k = 0; k < ncand; k++) {
            ein_candidate c = cand[k];
            if (c.x == best.x || c.x == best.y || c.y == best.x || c.y == best.y) continue;
            c.x -= (c.x > best.x) + (c.x > best.y);
            c.y -= (c.y > best.x) + (c.y > best.y);
            cand[kept++] = c;
        }
        ncand = kept;
        first = m - 1; /* new pairs: those with the result */
        cost += best.cost;
    }
    free(cand);
    p->cost = cost, p->scaling = scaling;
    return 0;
}

/* ─────────── evaluation ─────────── */

/* The einsum of sp's operands along path, inside the caller's scope. */
static pn_array *ein_eval(ein_spec *sp, const ein_path *path, pn_array *const *operands)
{
    int n = sp->n;
    ein_term *terms = sp->terms;
    const ein_term *outt = &sp->out;
    const int64_t *dims = sp->dims;
    /* each operand: repeated letters to diagonals, then sum letters nobody else needs */
    pn_array *ops[EIN_MAX_TERMS];
    for (int i = 0; i < n; i++) {
        pn_array *x = operands[i];
        ein_term *t = &terms[i];
        for (;;) { /* a repeated letter: its first two axes become one diagonal axis */
            int p = -1, q = -1;
            for (int j = 0; j < t->n && p < 0; j++) {
                const char *r = memchr(t->s + j + 1, t->s[j], t->n - j - 1);
                if (r) p = j, q = (int)(r - t->s);
            }
            if (p < 0 || !x) break;
            char c = t->s[p];
            x = pn_diagonal(x, 0, p, q);
            memmove(t->s + q, t->s + q + 1, t->n - q - 1), t->n--;
            memmove(t->s + p, t->s + p + 1, t->n - p - 1), t->n--;
            t->s[t->n++] = c;
        }
        int sa[PNC_MAX_NDIM], ns = 0;
        for (int j = 0; j < t->n; j++) {
            char c = t->s[j];
            bool need = term_has(outt, c);
            for (int k = 0; k < n && !need; k++) need = k != i && term_has(&terms[k], c);
            if (!need) sa[ns++] = j;
        }
        ops[i] = x ? ein_sum_axes(x, t, sa, ns) : NULL;
        if (!ops[i]) return NULL;
    }
    /* contract along the path: a step's operands leave the list, its result joins the end */
    int m = n;
    for (int s = 0; s < path->nsteps; s++) {
        const int *pos = path->pos + path->start[s];
        int k = path->start[s + 1] - path->start[s];
        bool in_step[EIN_MAX_TERMS] = {0};
        for (int j = 0; j < k; j++) in_step[pos[j]] = true;
        pn_array *cur = ops[pos[0]];
        ein_term tc = terms[pos[0]];
        for (int j = 1; j < k && cur; j++) {
            bool keep[256] = {0}; /* the output's letters and those of what is not yet in */
            for (int q = 0; q < outt->n; q++) keep[(unsigned char)outt->s[q]] = true;
            for (int i = 0; i < m; i++) {
                bool later = !in_step[i];
                for (int q = j + 1; q < k && !later; q++) later = pos[q] == i;
                for (int q = 0; later && q < terms[i].n; q++) keep[(unsigned char)terms[i].s[q]] = true;
            }
            cur = ein_pair(cur, &tc, ops[pos[j]], &terms[pos[j]], keep, dims);
        }
        if (!cur) return NULL;
        for (int j = k - 1; j >= 0; j--) { /* positions ascend: drop from the back */
            memmove(ops + pos[j], ops + pos[j] + 1, sizeof *ops * (size_t)(m - pos[j] - 1));
            memmove(terms + pos[j], terms + pos[j] + 1, sizeof *terms * (size_t)(m - pos[j] - 1));
            m--;
        }
        ops[m] = cur, terms[m] = tc, m++;
    }
    /* what is left carries exactly the output letters: put them in order */
    int perm[PNC_MAX_NDIM];
    int64_t oshape[PNC_MAX_NDIM];
    for (int i = 0; i < outt->n; i++) {
        perm[i] = term_find(&terms[0], outt->s[i]);
        oshape[i] = dims[(unsigned char)outt->s[i]];
    }
    return pn_broadcast_to(pn_transpose(ops[0], perm, outt->n), oshape, outt->n);
}

/* The einsum itself, inside the caller's scope. */
static pn_array *einsum_impl(const char *subscripts, pn_array *const *operands, int n)
{
    ein_spec *sp = malloc(sizeof *sp);
    ein_path *path = malloc(sizeof *path);
    pn_array *r = NULL;
    if (!sp || !path) pnC_fail(PN_ERR_OUT_OF_MEMORY, "[einsum] out of memory");
    else if (ein_parse(subscripts, operands, n, sp) == 0 && ein_greedy_path(sp, path) == 0)
        r = ein_eval(sp, path, operands);
    free(sp);
    free(path);
    return r;
}

/* See ponte.h. */
pn_array *pn_einsum(const char *subscripts, pn_array *const *operands, int n)
{
    if (!subscripts) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] subscripts is NULL.");
    if (n <= 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[einsum] At least one operand is required.");
    if (!pnC_inputs_ok("einsum", n, operands)) return NULL;
    pn_scope_push();
    return pnC_scope_return(einsum_impl(subscripts, operands, n));
}

/* See ponte.h. */
int pn_einsum_path(const char *subscripts, pn_array *const *operands, int n, int *path, int cap,
                   uint64_t info[4])
{
    if (!subscripts || !path)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[einsum_path] subscripts or path is NULL.");
    if (n <= 0) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[einsum_path] At least one operand is required.");
    if (!pnC_inputs_ok("einsum_path", n, operands)) return -1;
    ein_spec *sp = malloc(sizeof *sp);
    ein_path *p = malloc(sizeof *p);
    int rc = -1;
    if (!sp || !p) pn_set_error(PN_ERR_OUT_OF_MEMORY, "[einsum_path] out of memory");
    else if (ein_parse(subscripts, operands, n, sp) == 0 && ein_greedy_path(sp, p) == 0) {
        int w = 0;
        for (int s = 0; s < p->nsteps && w >= 0; s++) {
            int k = p->start[s + 1] - p->start[s];
            if (w + 1 + k > cap) w = -1;
            else {
                path[w++] = k;
                for (int j = 0; j < k; j++) path[w++] = p->pos[p->start[s] + j];
            }
        }
        if (w < 0) pn_set_error(PN_ERR_INVALID_ARGUMENT, "[einsum_path] cap is too small for the path.");
        else rc = p->nsteps;
        if (info) info[0] = p->naive_cost, info[1] = p->cost, info[2] = (uint64_t)p->naive_scaling,
                  info[3] = (uint64_t)p->scaling;
    }
    free(sp);
    free(p);
    return rc;
}
