/* compose.c — mlx.core functions built only from existing ops: no primitive of their own, so
 * they run on every backend and differentiate (and vmap) through their parts. Array ops (kron,
 * diff, median, count_nonzero, searchsorted, vecdot, hadamard_transform, the dynamic slice and
 * slice_update, windows, view, masked_scatter: MLX's a[mask] = v) and mlx.core.linalg's qr
 * (Householder reflections, column by column) and cross. The solvers and Cholesky have
 * primitives: src/ops/linalg_solve.c. */
#include "core/core.h"

#include <math.h>
#include <string.h>

/* ───────────────────────────── helpers ───────────────────────────── */

/* a[..., start:stop, ...] along axis (which may be negative). NULL-safe. */
static pn_array *slice_axis(pn_array *a, int axis, int64_t start, int64_t stop)
{
    if (!a) return NULL;
    int nd = pn_ndim(a);
    if (axis < 0) axis += nd;
    int64_t lo[PNC_MAX_NDIM], hi[PNC_MAX_NDIM];
    for (int k = 0; k < nd; k++) lo[k] = 0, hi[k] = pn_shape(a)[k];
    lo[axis] = start, hi[axis] = stop;
    return pn_slice(a, lo, hi, NULL, nd);
}

/* a with its floating dtype, or cast to float32 when it is bool or an integer. */
static pn_array *at_least_float(pn_array *a)
{
    if (!a) return NULL;
    return pnC_is_inexact(pn_array_dtype(a)) ? a : pn_astype(a, PN_FLOAT32);
}

/* ───────────────────────────── array ops ───────────────────────────── */

/* See ponte.h. */
pn_array *pn_kron(pn_array *a, pn_array *b)
{
    pn_array *ins[2] = {a, b};
    if (!pnC_inputs_ok("kron", 2, ins)) return NULL;
    if (pn_size(a) == 0 || pn_size(b) == 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[kron] Input arrays cannot be empty.");
    int na = pn_ndim(a), nb = pn_ndim(b), nd = na > nb ? na : nb;
    if (nd == 0) return pn_multiply(a, b);
    if (2 * nd > PNC_MAX_NDIM)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[kron] Inputs with %d dimensions are not supported.", nd);
    /* a as (a0, 1, a1, 1, ...) times b as (1, b0, 1, b1, ...) is (a0, b0, a1, b1, ...) */
    int64_t sa[PNC_MAX_NDIM], sb[PNC_MAX_NDIM], out[PNC_MAX_NDIM];
    for (int k = 0; k < nd; k++) {
        int64_t ak = k < nd - na ? 1 : pn_shape(a)[k - (nd - na)];
        int64_t bk = k < nd - nb ? 1 : pn_shape(b)[k - (nd - nb)];
        sa[2 * k] = ak, sa[2 * k + 1] = 1;
        sb[2 * k] = 1, sb[2 * k + 1] = bk;
        out[k] = ak * bk;
    }
    pn_scope_push();
    pn_array *r = pn_multiply(pn_reshape(a, sa, 2 * nd), pn_reshape(b, sb, 2 * nd));
    return pnC_scope_return(pn_reshape(r, out, nd));
}

/* See ponte.h. */
pn_array *pn_diff(pn_array *a, int n, int axis)
{
    if (!pnC_inputs_ok("diff", 1, &a)) return NULL;
    if (n < 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[diff] Order must be non-negative but got %d.", n);
    if (pn_ndim(a) == 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[diff] Requires an array with at least one dimension.");
    int ax = pnC_axis("diff", axis, pn_ndim(a));
    if (ax < 0) return NULL;
    bool is_bool = pn_array_dtype(a) == PN_BOOL;
    pn_scope_push();
    pn_array *x = a;
    for (int i = 0; i < n && x; i++) {
        int64_t len = pn_shape(x)[ax];
        if (len == 0) break;
        pn_array *hi = slice_axis(x, ax, 1, len), *lo = slice_axis(x, ax, 0, len - 1);
        x = is_bool ? pn_not_equal(hi, lo) : pn_subtract(hi, lo);
    }
    return pnC_scope_return(x);
}

/* See ponte.h. */
pn_array *pn_median(pn_array *a, const int *axes, int naxes, bool keepdims)
{
    if (!pnC_inputs_ok("median", 1, &a)) return NULL;
    int nd = pn_ndim(a), ax[PNC_MAX_NDIM];
    int nax = pnC_axes("median", axes, naxes, nd, ax);
    if (nax < 0) return NULL;
    if (pn_array_dtype(a) == PN_COMPLEX64)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[median] Complex arrays are not supported.");
    bool red[PNC_MAX_NDIM] = {0};
    for (int i = 0; i < nax; i++) red[ax[i]] = true;
    /* the kept axes first, then the reduced ones flattened into one */
    int perm[PNC_MAX_NDIM], np = 0, nk = 0;
    int64_t kshape[PNC_MAX_NDIM], count = 1, outshape[PNC_MAX_NDIM];
    for (int k = 0; k < nd; k++)
        if (!red[k]) perm[np++] = k, kshape[nk++] = pn_shape(a)[k];
    for (int k = 0; k < nd; k++)
        if (red[k]) perm[np++] = k, count *= pn_shape(a)[k];
    for (int k = 0; k < nd; k++) outshape[k] = red[k] ? 1 : pn_shape(a)[k];
    pn_scope_push();
    pn_array *x = at_least_float(a), *r;
    kshape[nk] = count;
    x = pn_reshape(pn_transpose(x, perm, nd), kshape, nk + 1);
    if (count == 0) {
        r = pn_full(kshape, nk, pn_scalar(NAN, pn_array_dtype(x)), pn_array_dtype(x));
    } else {
        pn_array *s = pn_sort(x, -1);
        int64_t m = count / 2;
        r = count % 2 ? slice_axis(s, -1, m, m + 1)
                      : pn_multiply(pn_add(slice_axis(s, -1, m - 1, m), slice_axis(s, -1, m, m + 1)),
                                    pn_weak_float(0.5));
        r = pn_reshape(r, kshape, nk);
    }
    if (keepdims) r = pn_reshape(r, outshape, nd);
    return pnC_scope_return(r);
}

/* See ponte.h. */
pn_array *pn_count_nonzero(pn_array *a, const int *axes, int naxes, bool keepdims)
{
    if (!pnC_inputs_ok("count_nonzero", 1, &a)) return NULL;
    pn_scope_push();
    pn_array *nz = pn_astype(pn_not_equal(a, pn_weak_int(0)), PN_INT32);
    return pnC_scope_return(pn_sum(nz, axes, naxes, keepdims));
}

/* See ponte.h. Binary search over all values at once: ceil(log2(n + 1)) rounds of a gather
 * and a comparison, each at least halving [lo, hi) per value. */
pn_array *pn_searchsorted(pn_array *sorted_sequence, pn_array *values, bool right)
{
    pn_array *ins[2] = {sorted_sequence, values};
    if (!pnC_inputs_ok("searchsorted", 2, ins)) return NULL;
    if (pn_ndim(sorted_sequence) != 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[searchsorted] sorted_sequence must be 1-D, but "
                        "it has %d dimensions.", pn_ndim(sorted_sequence));
    if (pn_array_dtype(sorted_sequence) == PN_COMPLEX64 || pn_array_dtype(values) == PN_COMPLEX64)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[searchsorted] Complex arrays are not supported.");
    int64_t n = pn_size(sorted_sequence);
    pn_dtype it = n < INT32_MAX ? PN_INT32 : PN_INT64;
    pn_scope_push();
    pn_array *lo = pn_zeros(pn_shape(values), pn_ndim(values), it);
    pn_array *hi = pn_full(pn_shape(values), pn_ndim(values), pn_scalar_int(n, it), it);
    pn_array *last = pn_scalar_int(n > 0 ? n - 1 : 0, it), *one = pn_scalar_int(1, it);
    for (int64_t span = n; span > 0 && lo; span >>= 1) {
        pn_array *mid = pn_right_shift(pn_add(lo, hi), one);
        pn_array *mv = pn_take(sorted_sequence, pn_minimum(mid, last), 0);
        pn_array *go = right ? pn_less_equal(mv, values) : pn_less(mv, values);
        pn_array *active = pn_less(lo, hi);
        lo = pn_where(pn_logical_and(active, go), pn_add(mid, one), lo);
        hi = pn_where(pn_logical_and(active, pn_logical_not(go)), mid, hi);
    }
    return pnC_scope_return(pn_astype(lo, PN_UINT32));
}

/* See ponte.h. */
pn_array *pn_vecdot(pn_array *a, pn_array *b, int axis)
{
    pn_array *ins[2] = {a, b};
    if (!pnC_inputs_ok("vecdot", 2, ins)) return NULL;
    int64_t shape[PNC_MAX_NDIM];
    int nd = pnC_broadcast_shapes("vecdot", pn_shape(a), pn_ndim(a), pn_shape(b), pn_ndim(b), shape);
    if (nd < 0) return NULL;
    if (nd == 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[vecdot] Inputs must have at least one dimension.");
    int ax = pnC_axis("vecdot", axis, nd);
    if (ax < 0) return NULL;
    pn_scope_push();
    pn_array *x = pn_array_dtype(a) == PN_COMPLEX64 ? pn_conjugate(a) : a;
    return pnC_scope_return(pn_sum(pn_multiply(x, b), &ax, 1, false));
}

/* The Hadamard matrices of orders 12, 20 and 28 that MLX's hadamard_transform uses for sizes
 * m * 2^k (Sloane's library of Hadamard matrices), row a giving the transform of the basis
 * vector e_a: '+' is 1, '-' is -1. */
static const char *const hadamard_12[12] = {
    "+-++++++++++", "--+-+-+-+-+-", "+++-++----++", "+---+--+-++-", "+++++-++----", "+-+---+--+-+",
    "++--+++-++--", "+--++---+--+", "++----+++-++", "+--+-++---+-", "++++----+++-", "+-+--+-++---",
};
static const char *const hadamard_20[20] = {
    "+-----++++--++--+--+", "-+---+-+++---+++-+--", "--+--++-+++---+-+-+-", "---+-+++-+++-----+-+",
    "----+++++--++--+--+-", "+----+----+-++---++-", "-+----+----+-++---++", "--+----+--+-+-++---+",
    "---+----+-++-+-++---", "----+----+-++-+-++--", "++--+-+--++----+----", "+++--+-+---+----+---",
    "-+++--+-+---+----+--", "--+++--+-+---+----+-", "+--+++--+-----+----+", "+-++-++--+-+++++----",
    "-+-+++++--+-+++-+---", "+-+-+-+++-++-++--+--", "++-+---++++++-+---+-", "-++-++--++++++-----+",
};
static const char *const hadamard_28[28] = {
    "+--------++++--+-++-+-++--++", "-+--------+++++-+-++-+-++--+", "--+----+---+++-+-+-++++-++--",
    "---+---++---+++-+-+-+-++-++-", "----+--+++---+++-+-+---++-++", "-----+-++++----++-+-++--++-+",
    "------+-++++--+-++-+-++--++-", "++----++------+--++---+-++-+", "+++-----+------+--++-+-+-++-",
    "-+++-----+------+--++-+-+-++", "--+++-----+---+--+--++-+-+-+", "---+++-----+--++--+--++-+-+-",
    "----+++-----+--++--+--++-+-+", "+----++------+--++--++-++-+-", "+-+--+--++--+++------++----+",
    "-+-+--++-++--+-+-----+++----", "+-+-+--++-++----+-----+++---", "-+-+-+--++-++----+-----+++--",
    "--+-+-+--++-++----+-----+++-", "+--+-+-+--++-+-----+-----+++", "-+--+-+++--++-------++----++",
    "+--++--+-+--+---++++-+------", "-+--++--+-+--+---++++-+-----", "--+--+++-+-+--+---+++--+----",
    "+--+--+-+-+-+-++---++---+---", "++--+----+-+-++++---+----+--", "-++--+-+--+-+-++++--------+-",
    "--++--+-+--+-+-++++--------+",
};

/* The transposed order-m matrix (m: 12, 20 or 28) as an m x m array of dtype dt. */
static pn_array *hadamard_small_transposed(int m, pn_dtype dt)
{
    const char *const *rows = m == 12 ? hadamard_12 : m == 20 ? hadamard_20 : hadamard_28;
    float t[28 * 28];
    for (int a = 0; a < m; a++)
        for (int c = 0; c < m; c++) t[c * m + a] = rows[a][c] == '+' ? 1.0f : -1.0f;
    int64_t shape[2] = {m, m};
    return pn_astype(pn_array_from_data(t, shape, 2, PN_FLOAT32), dt);
}

/* See ponte.h. For n = m * 2^k (m 1, 12, 20 or 28) the last axis is viewed as (m, 2^k): Sylvester's
 * butterfly, log2(2^k) rounds over pairs (x[j], x[j + h]), runs along the 2^k axis, then the
 * order-m matrix mixes the m axis (one matmul). */
pn_array *pn_hadamard_transform(pn_array *a, const double *scale)
{
    if (!pnC_inputs_ok("hadamard_transform", 1, &a)) return NULL;
    if (pn_array_dtype(a) == PN_COMPLEX64)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[hadamard_transform] Complex arrays are not supported.");
    int nd = pn_ndim(a);
    int64_t n = nd ? pn_shape(a)[nd - 1] : 1;
    int64_t p = n > 0 ? n & -n : 0; /* the largest power of two dividing n */
    int m = p == 0 ? 0 : n == p ? 1 : n / p == 3 && p >= 4 ? 12 : n / p == 5 && p >= 4 ? 20
          : n / p == 7 && p >= 4 ? 28 : 0;
    if (m == 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[hadamard_transform] The last axis must have a size "
                        "of 2^k, 12 * 2^k, 20 * 2^k or 28 * 2^k, got %lld.", (long long)n);
    p = n / m;
    double s = scale ? *scale : 1.0 / sqrt((double)n);
    pn_scope_push();
    pn_array *x = at_least_float(a);
    /* float16 / bfloat16 compute in float32 and round once at the end, as MLX's kernels */
    pn_dtype out_t = x ? pn_array_dtype(x) : PN_FLOAT32;
    if (out_t == PN_FLOAT16 || out_t == PN_BFLOAT16) x = pn_astype(x, PN_FLOAT32);
    int64_t shape[PNC_MAX_NDIM + 3];
    memcpy(shape, pn_shape(a), sizeof(int64_t) * (size_t)(nd > 0 ? nd - 1 : 0));
    int lead = nd > 0 ? nd - 1 : 0; /* the axes before the transformed one */
    for (int64_t h = 1; h < p && x; h *= 2) {
        shape[lead] = m, shape[lead + 1] = p / (2 * h), shape[lead + 2] = 2, shape[lead + 3] = h;
        pn_array *y = pn_reshape(x, shape, lead + 4);
        pn_array *y0 = slice_axis(y, lead + 2, 0, 1), *y1 = slice_axis(y, lead + 2, 1, 2);
        pn_array *parts[2] = {pn_add(y0, y1), pn_subtract(y0, y1)};
        x = pn_concatenate(parts, 2, lead + 2);
    }
    if (m > 1 && x) {
        shape[lead] = m, shape[lead + 1] = p;
        x = pn_matmul(hadamard_small_transposed(m, pn_array_dtype(x)), pn_reshape(x, shape, lead + 2));
    }
    x = x ? pn_reshape(x, pn_shape(a), nd) : NULL;
    x = pn_multiply(x, pn_weak_float(s));
    if (x && pn_array_dtype(x) != out_t) x = pn_astype(x, out_t);
    return pnC_scope_return(x);
}

/* The 0-d int32 index start[i] of a flattened start-index array. */
static pn_array *start_index(pn_array *flat, int i)
{
    return pn_take(flat, pn_scalar_int(i, PN_INT32), 0);
}

/* Checks the arguments shared by the dynamic slice and slice_update: normalizes axes into ax,
 * flattens start into *flat. Returns 0 or -1. */
static int dynamic_args(const char *op, pn_array *a, pn_array *start, const int *axes, int naxes,
                        int *ax, pn_array **flat)
{
    if (naxes > 0 && pnC_axes(op, axes, naxes, pn_ndim(a), ax) < 0) return -1;
    if (!pnC_is_integer(pn_array_dtype(start)))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] start_indices must be integers, got %s.", op,
                        pn_dtype_name(pn_array_dtype(start))), -1;
    if (pn_size(start) != naxes)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[%s] Got %lld start indices for %d axes.", op,
                        (long long)pn_size(start), naxes), -1;
    *flat = pn_flatten(start, 0, -1);
    return *flat ? 0 : -1;
}

/* See ponte.h. One gather whose indices are the 0-d start indices. */
pn_array *pn_slice_dynamic(pn_array *a, pn_array *start, const int *axes, int naxes,
                           const int64_t *slice_size, int nsize)
{
    pn_array *ins[2] = {a, start};
    if (!pnC_inputs_ok("slice", 2, ins)) return NULL;
    if (nsize != pn_ndim(a))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[slice] slice_size must have one entry per axis of "
                        "the input (%d), got %d.", pn_ndim(a), nsize);
    int ax[PNC_MAX_NDIM];
    pn_array *flat, *idx[PNC_MAX_NDIM];
    pn_scope_push();
    if (dynamic_args("slice", a, start, axes, naxes, ax, &flat)) return pnC_scope_return(NULL);
    for (int i = 0; i < naxes; i++) idx[i] = start_index(flat, i);
    if (naxes == 0) { /* nothing dynamic: a static slice at the origin */
        int64_t lo[PNC_MAX_NDIM] = {0};
        return pnC_scope_return(pn_slice(a, lo, slice_size, NULL, nsize));
    }
    return pnC_scope_return(pn_gather(a, idx, naxes, ax, slice_size));
}

/* See ponte.h. One scatter (set) whose indices are the 0-d start indices. */
pn_array *pn_slice_update_dynamic(pn_array *a, pn_array *update, pn_array *start, const int *axes,
                                  int naxes)
{
    pn_array *ins[3] = {a, update, start};
    if (!pnC_inputs_ok("slice_update", 3, ins)) return NULL;
    int nd = pn_ndim(a), nu = pn_ndim(update);
    if (nu > nd)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[slice_update] The update (%d dimensions) has more "
                        "dimensions than the input (%d).", nu, nd);
    int64_t ushape[PNC_MAX_NDIM];
    for (int k = 0; k < nd; k++) {
        ushape[k] = k < nd - nu ? 1 : pn_shape(update)[k - (nd - nu)];
        if (ushape[k] > pn_shape(a)[k])
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[slice_update] The update is larger than the "
                            "input along axis %d (%lld > %lld).", k, (long long)ushape[k],
                            (long long)pn_shape(a)[k]);
    }
    int ax[PNC_MAX_NDIM];
    pn_array *flat, *idx[PNC_MAX_NDIM];
    pn_scope_push();
    if (dynamic_args("slice_update", a, start, axes, naxes, ax, &flat)) return pnC_scope_return(NULL);
    for (int i = 0; i < naxes; i++) idx[i] = start_index(flat, i);
    pn_array *u = pn_reshape(pn_astype(update, pn_array_dtype(a)), ushape, nd);
    if (naxes == 0) { /* nothing dynamic: a static update at the origin */
        int64_t lo[PNC_MAX_NDIM] = {0};
        return pnC_scope_return(pn_slice_update(a, u, lo, ushape, NULL, nd));
    }
    return pnC_scope_return(pn_scatter(a, idx, naxes, u, ax, PN_SCATTER_SET));
}

/* See ponte.h. */
pn_array *pn_window(pn_window_kind kind, int64_t m)
{
    static const double cosines[][3] = {
        [PN_WINDOW_BLACKMAN] = {0.42, 0.5, 0.08},
        [PN_WINDOW_HAMMING] = {0.54, 0.46, 0},
        [PN_WINDOW_HANNING] = {0.5, 0.5, 0},
    };
    if ((unsigned)kind > PN_WINDOW_HANNING)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[window] Invalid kind %d.", (int)kind);
    if (m <= 1) return m == 1 ? pn_ones(&m, 1, PN_FLOAT32) : pn_zeros((int64_t[]){0}, 1, PN_FLOAT32);
    pn_scope_push();
    /* t = n / (m - 1) in [0, 1] */
    pn_array *t = pn_multiply(pn_arange(0, (double)m, 1, PN_FLOAT32), pn_weak_float(1.0 / (double)(m - 1)));
    if (kind == PN_WINDOW_BARTLETT) {
        pn_array *d = pn_abs(pn_subtract(pn_multiply(t, pn_weak_float(2)), pn_weak_float(1)));
        return pnC_scope_return(pn_subtract(pn_weak_float(1), d));
    }
    const double *c = cosines[kind];
    pn_array *c1 = pn_cos(pn_multiply(t, pn_weak_float(2 * M_PI)));
    pn_array *w = pn_subtract(pn_weak_float(c[0]), pn_multiply(pn_weak_float(c[1]), c1));
    if (c[2] != 0) {
        pn_array *c2 = pn_cos(pn_multiply(t, pn_weak_float(4 * M_PI)));
        w = pn_add(w, pn_multiply(pn_weak_float(c[2]), c2));
    }
    return pnC_scope_return(w);
}

/* See ponte.h. */
pn_array *pn_view(pn_array *a, pn_dtype dtype)
{
    if (!pnC_inputs_ok("view", 1, &a)) return NULL;
    if (!pnC_dtype_valid(dtype)) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[view] Invalid dtype.");
    int nd = pn_ndim(a);
    size_t isz = pn_itemsize(a), osz = pn_dtype_size(dtype);
    int64_t shape[PNC_MAX_NDIM];
    memcpy(shape, pn_shape(a), sizeof(int64_t) * (size_t)nd);
    if (isz != osz) {
        if (nd == 0)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[view] Changing the type of a scalar is only "
                            "allowed for types with the same size.");
        int64_t bytes = shape[nd - 1] * (int64_t)isz;
        if (bytes % (int64_t)osz)
            return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[view] The last axis of %lld %s elements cannot "
                            "be viewed as %s.", (long long)shape[nd - 1],
                            pn_dtype_name(pn_array_dtype(a)), pn_dtype_name(dtype));
        shape[nd - 1] = bytes / (int64_t)osz;
    }
    if (pnC_tracing())
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[view] Ponte reinterprets evaluated data, which a "
                        "function transformation (grad, vjp, jvp, vmap) cannot trace.");
    if (pn_size(a) == 0) return pn_zeros(shape, nd, dtype);
    const void *data = pn_data(a);
    return data ? pn_array_from_data(data, shape, nd, dtype) : NULL;
}

/* ───────────────────────────── linear algebra ───────────────────────────── */

/* See ponte.h. */
pn_array *pn_linalg_cross(pn_array *a, pn_array *b, int axis)
{
    pn_array *ins[2] = {a, b};
    if (!pnC_inputs_ok("linalg::cross", 2, ins)) return NULL;
    int na = pn_ndim(a), nb = pn_ndim(b);
    if (!na || !nb)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::cross] Inputs must have at least one dimension.");
    int xa = pnC_axis("linalg::cross", axis, na), xb = xa < 0 ? -1 : pnC_axis("linalg::cross", axis, nb);
    if (xa < 0 || xb < 0) return NULL;
    int64_t da = pn_shape(a)[xa], db = pn_shape(b)[xb];
    if ((da != 2 && da != 3) || (db != 2 && db != 3))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[linalg::cross] The input arrays must have size 2 or "
                        "3 along the axis, got %lld and %lld.", (long long)da, (long long)db);
    pn_scope_push();
    /* 2-vectors get a zero third component */
    int64_t one = 1;
    pn_array *u = da == 3 ? a : pn_pad(a, &xa, (int64_t[]){0}, &one, 1, NULL, PN_PAD_CONSTANT);
    pn_array *v = db == 3 ? b : pn_pad(b, &xb, (int64_t[]){0}, &one, 1, NULL, PN_PAD_CONSTANT);
    pn_array *uc[3], *vc[3];
    for (int i = 0; i < 3; i++) uc[i] = slice_axis(u, xa, i, i + 1), vc[i] = slice_axis(v, xb, i, i + 1);
    pn_array *c[3];
    for (int i = 0; i < 3; i++) {
        int j = (i + 1) % 3, k = (i + 2) % 3;
        c[i] = pn_subtract(pn_multiply(uc[j], vc[k]), pn_multiply(uc[k], vc[j]));
    }
    /* the components broadcast to the output, joined along the axis as counted from the end */
    int tail = na - xa > nb - xb ? na - xa : nb - xb;
    return pnC_scope_return(pn_concatenate(c, 3, -tail));
}

/* ───────────────────────────── masked scatter ───────────────────────────── */

/* See ponte.h. The positions of the mask's true entries come from a running count (cumsum),
 * so nothing is evaluated: it differentiates through where / take and vmaps per example. */
pn_array *pn_masked_scatter(pn_array *a, pn_array *mask, pn_array *src)
{
    pn_array *ins[3] = {a, mask, src};
    if (!pnC_inputs_ok("masked_scatter", 3, ins)) return NULL;
    int nd = a->ndim, k = mask->ndim, nrest = nd - k;
    if (mask->dtype != PN_BOOL)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[masked_scatter] The mask has to be boolean.");
    bool prefix = k >= 1 && k <= nd;
    for (int d = 0; prefix && d < k; d++) prefix = mask->shape[d] == a->shape[d];
    if (!prefix)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[masked_scatter] The boolean mask should have the same shape as the "
                        "beginning of the indexed array.");
    if (src->ndim > nrest + 1)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT,
                        "[masked_scatter] Value array shape must be broadcastable with the last "
                        "%d dimensions of the input.", nrest);
    pn_scope_push();
    int64_t shape[PNC_MAX_NDIM];
    for (int d = 0; d < nd; d++) shape[d] = d < k ? a->shape[d] : 1;
    pn_array *m = pn_reshape(mask, shape, nd); /* mask[..., None, ...] over the rest */
    pn_array *v = pn_astype(src, a->dtype), *r;
    if (src->ndim <= nrest) { /* one value for every selected slice */
        r = pn_where(m, pn_broadcast_to(v, a->shape + k, nrest), a);
    } else { /* the selected slices take src's rows in order (the last one repeats past them) */
        int64_t rows[PNC_MAX_NDIM];
        rows[0] = src->shape[0];
        for (int d = 0; d < nrest; d++) rows[1 + d] = a->shape[k + d];
        v = pn_broadcast_to(v, rows, nrest + 1);
        int64_t nsel = 1;
        for (int d = 0; d < k; d++) nsel *= a->shape[d];
        pn_array *pos = pn_cumsum(pn_reshape(pn_astype(mask, PN_INT32), &nsel, 1), 0, false, true);
        pos = pn_clip(pn_subtract(pos, pn_scalar(1, PN_INT32)), pn_scalar(0, PN_INT32),
                      pn_scalar((double)(rows[0] > 0 ? rows[0] - 1 : 0), PN_INT32));
        pn_array *g = rows[0] > 0 ? pn_take(v, pos, 0) : pn_zeros_like(a); /* (nsel, rest...) */
        r = pn_where(m, rows[0] > 0 ? pn_reshape(g, a->shape, nd) : g, a);
    }
    return pnC_scope_return(r);
}
