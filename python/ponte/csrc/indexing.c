/* indexing.c — a[idx], a[idx] = v and a.at[idx].op(v) with numpy's rules (which MLX follows):
 * ints, slices, None, Ellipsis, integer arrays (broadcast together, their dimensions placed as
 * numpy places them) and boolean masks (numpy's rule; MLX lacks it). Basic indexing makes
 * views (slice, squeeze, expand_dims); array indices become one gather. */
#include "pyponte.h"

#include <string.h>

typedef enum { IX_INT, IX_SLICE, IX_NONE, IX_ARRAY } ix_kind;

typedef struct {
    ix_kind kind;
    int axis;         /* the axis of a it indexes (-1 for None) */
    int64_t i;        /* IX_INT, normalized */
    int64_t start, stop, step; /* IX_SLICE, for pn_slice */
    pn_array *arr;    /* IX_ARRAY (owned) */
    int64_t mask_len; /* IX_ARRAY from a boolean mask: the mask's extent on this axis, else 0 */
} ix_item;

typedef struct {
    ix_item it[2 * PP_MAXDIM];
    int n, nadv;
} ix_plan;

static void plan_free(ix_plan *p)
{
    for (int k = 0; k < p->n; k++)
        if (p->it[k].arr) pn_release(p->it[k].arr);
    p->n = 0;
}

static int bad_index(void)
{
    PyErr_SetString(PyExc_ValueError, "Cannot index mlx array using the given type.");
    return -1;
}

static ix_item *push(ix_plan *p, ix_kind kind)
{
    if (p->n >= 2 * PP_MAXDIM) {
        PyErr_SetString(PyExc_IndexError, "Too many indices.");
        return NULL;
    }
    ix_item *it = &p->it[p->n++];
    memset(it, 0, sizeof *it);
    it->kind = kind;
    it->axis = -1;
    return it;
}

/* A boolean mask becomes one int64 index array per mask dimension (numpy's nonzero). */
static int push_mask(ix_plan *p, pn_array *mask)
{
    int k = pn_ndim(mask);
    int64_t n = pn_size(mask);
    const uint8_t *m = pn_data(mask);
    if (!m && n > 0) return pp_raise(), -1;
    int64_t cnt = 0;
    for (int64_t i = 0; i < n; i++) cnt += m[i] != 0;
    if (k == 0) { /* a[True] / a[False]: a new axis of length 1 or 0 */
        PyErr_SetString(PyExc_ValueError, "Cannot index with a 0-dimensional boolean mask.");
        return -1;
    }
    int64_t *idx = PyMem_Malloc((size_t)(cnt * k + 1) * sizeof(int64_t));
    if (!idx) return PyErr_NoMemory(), -1;
    const int64_t *shape = pn_shape(mask);
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!m[i]) continue;
        int64_t rem = i;
        for (int d = k - 1; d >= 0; d--) {
            idx[d * cnt + c] = rem % shape[d];
            rem /= shape[d];
        }
        c++;
    }
    int rc = 0;
    for (int d = 0; d < k && rc == 0; d++) {
        ix_item *it = push(p, IX_ARRAY);
        if (!it) rc = -1;
        else if (!(it->arr = pn_array_from_data(idx + d * cnt, &cnt, 1, PN_INT64))) rc = -1, pp_raise();
        else p->nadv++, it->mask_len = shape[d];
    }
    PyMem_Free(idx);
    return rc;
}

/* Parses idx against an array of the given shape into p. Returns 0 or -1. */
static int parse_index(PyObject *idx, const int64_t *shape, int ndim, ix_plan *p)
{
    memset(p, 0, sizeof *p);
    PyObject *tup = PyTuple_Check(idx) ? (Py_INCREF(idx), idx) : PyTuple_Pack(1, idx);
    if (!tup) return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(tup);
    int ellipsis = -1, rc = 0;
    for (Py_ssize_t k = 0; k < n && rc == 0; k++) {
        PyObject *o = PyTuple_GET_ITEM(tup, k);
        ix_item *it;
        if (o == Py_None) {
            rc = push(p, IX_NONE) ? 0 : -1;
        } else if (o == Py_Ellipsis) {
            if (ellipsis >= 0) {
                PyErr_SetString(PyExc_ValueError, "An index can only have a single ellipsis (...).");
                rc = -1;
            } else {
                ellipsis = p->n;
            }
        } else if (PySlice_Check(o)) {
            if (!(it = push(p, IX_SLICE))) rc = -1;
            else {
                Py_ssize_t a, b, s;
                if (PySlice_Unpack(o, &a, &b, &s)) rc = -1;
                it->start = a, it->stop = b, it->step = s;
            }
        } else if (PyBool_Check(o)) {
            rc = bad_index();
        } else if (PyLong_Check(o) || (!PPArray_Check(o) && !PyObject_CheckBuffer(o) && PyIndex_Check(o))) {
            Py_ssize_t v = PyNumber_AsSsize_t(o, PyExc_IndexError);
            if (v == -1 && PyErr_Occurred()) rc = -1;
            else if (!(it = push(p, IX_INT))) rc = -1;
            else it->i = v;
        } else if (PPArray_Check(o) || PyList_Check(o) || PyTuple_Check(o) || PyObject_CheckBuffer(o)) {
            pn_array *a = PPArray_Check(o) ? pn_retain(PPARR(o)) : pp_from_py(o, -1);
            if (!a) {
                rc = -1;
            } else if (pn_array_dtype(a) == PN_BOOL) {
                rc = push_mask(p, a);
                pn_release(a);
            } else if (!pn_issubdtype(pn_array_dtype(a), PN_CAT_INTEGER)) {
                pn_release(a);
                PyErr_SetString(PyExc_ValueError, "Arrays used as indices must be of integer (or boolean) type.");
                rc = -1;
            } else if (!(it = push(p, IX_ARRAY))) {
                pn_release(a);
                rc = -1;
            } else {
                it->arr = a;
                p->nadv++;
            }
        } else {
            rc = bad_index();
        }
    }
    Py_DECREF(tup);
    if (rc) {
        plan_free(p);
        return -1;
    }
    /* count the axes used, expand the ellipsis (or pad at the end) with full slices */
    int used = 0;
    for (int k = 0; k < p->n; k++) used += p->it[k].kind != IX_NONE;
    if (used > ndim) {
        plan_free(p);
        PyErr_Format(PyExc_ValueError, "Too many indices for array with %d dimensions.", ndim);
        return -1;
    }
    int fill = ndim - used, at = ellipsis >= 0 ? ellipsis : p->n;
    if (p->n + fill > 2 * PP_MAXDIM) {
        plan_free(p);
        PyErr_SetString(PyExc_IndexError, "Too many indices.");
        return -1;
    }
    memmove(&p->it[at + fill], &p->it[at], (size_t)(p->n - at) * sizeof(ix_item));
    for (int k = at; k < at + fill; k++) {
        memset(&p->it[k], 0, sizeof(ix_item));
        p->it[k].kind = IX_SLICE;
        p->it[k].start = 0, p->it[k].stop = PY_SSIZE_T_MAX, p->it[k].step = 1;
    }
    p->n += fill;
    /* assign axes, normalize ints and slices */
    int ax = 0;
    for (int k = 0; k < p->n; k++) {
        ix_item *it = &p->it[k];
        if (it->kind == IX_NONE) continue;
        it->axis = ax++;
        int64_t len = shape[it->axis];
        if (it->mask_len && it->mask_len != len) { /* numpy: the mask's shape must match */
            plan_free(p);
            PyErr_Format(PyExc_IndexError,
                         "Boolean index did not match the indexed array along axis %d: size %lld, "
                         "mask size %lld.", it->axis, (long long)len, (long long)it->mask_len);
            return -1;
        }
        if (it->kind == IX_INT) {
            int64_t v = it->i < 0 ? it->i + len : it->i;
            if (v < 0 || v >= len) {
                plan_free(p);
                PyErr_Format(PyExc_IndexError, "Index %lld is out of bounds for axis %d with size %lld.",
                             (long long)it->i, it->axis, (long long)len);
                return -1;
            }
            it->i = v;
        } else if (it->kind == IX_SLICE) {
            Py_ssize_t a = (Py_ssize_t)it->start, b = (Py_ssize_t)it->stop, s = (Py_ssize_t)it->step;
            PySlice_AdjustIndices((Py_ssize_t)len, &a, &b, s);
            /* pn_slice wraps negative bounds: "before the start" must stay below -len */
            it->start = a < 0 ? a - len : a;
            it->stop = b < 0 ? b - len : b;
            it->step = s;
        }
    }
    return 0;
}

/* The slice of a taken by the plan's ints and slices (arrays: the full axis). NULL raises. */
static pn_array *basic_slice(pn_array *a, const ix_plan *p, int ints_as_slices, int64_t *sshape)
{
    int nd = pn_ndim(a);
    int64_t start[PP_MAXDIM], stop[PP_MAXDIM], step[PP_MAXDIM];
    int trivial = 1;
    for (int d = 0; d < nd; d++) start[d] = 0, stop[d] = pn_shape(a)[d], step[d] = 1;
    for (int k = 0; k < p->n; k++) {
        const ix_item *it = &p->it[k];
        if (it->kind == IX_SLICE) {
            start[it->axis] = it->start, stop[it->axis] = it->stop, step[it->axis] = it->step;
            trivial &= it->start == 0 && it->stop == pn_shape(a)[it->axis] && it->step == 1;
        } else if (it->kind == IX_INT && ints_as_slices) {
            start[it->axis] = it->i, stop[it->axis] = it->i + 1;
            trivial &= pn_shape(a)[it->axis] == 1;
        }
    }
    pn_array *r = trivial ? pn_retain(a) : pn_slice(a, start, stop, step, nd);
    if (!r) return pp_raise(), NULL;
    if (sshape) memcpy(sshape, pn_shape(r), (size_t)nd * sizeof(int64_t));
    return r;
}

/* Replaces *x by f(*x) (releasing the old one). Returns 0 or -1 (raised). */
static int step_to(pn_array **x, pn_array *y)
{
    pn_release(*x);
    *x = y;
    if (!y) {
        pp_raise();
        return -1;
    }
    return 0;
}

/* a[idx] for a parsed plan. Returns a new array or NULL (raised). */
static pn_array *apply_plan(pn_array *a, const ix_plan *p)
{
    pn_array *r = basic_slice(a, p, p->nadv == 0, NULL);
    if (!r) return NULL;
    int axes[PP_MAXDIM], na = 0;
    int nB = 0;
    int first_adv = -1, last_adv = -1, nadv_items = 0;
    if (p->nadv == 0) {
        for (int k = 0; k < p->n; k++)
            if (p->it[k].kind == IX_INT) axes[na++] = p->it[k].axis;
        if (na && step_to(&r, pn_squeeze(r, axes, na))) return NULL;
    } else {
        /* ints join the array indices (numpy's rule) */
        pn_array *idx[PP_MAXDIM];
        int64_t sizes[PP_MAXDIM];
        int nd = pn_ndim(r), ok = 1;
        for (int d = 0; d < nd; d++) sizes[d] = pn_shape(r)[d];
        for (int k = 0; k < p->n; k++) {
            const ix_item *it = &p->it[k];
            if (it->kind != IX_INT && it->kind != IX_ARRAY) continue;
            if (first_adv < 0) first_adv = k;
            last_adv = k;
            nadv_items++;
            idx[na] = it->kind == IX_ARRAY ? pn_retain(it->arr) : pn_scalar_int(it->i, PN_INT64);
            if (!idx[na]) ok = 0;
            sizes[it->axis] = 1;
            axes[na++] = it->axis;
        }
        pn_array *g = ok ? pn_gather(r, idx, na, axes, sizes) : NULL;
        pp_release_all(idx, na);
        if (step_to(&r, g)) return NULL;
        nB = pn_ndim(r) - nd;
        int sq[PP_MAXDIM];
        for (int k = 0; k < na; k++) sq[k] = nB + axes[k];
        if (step_to(&r, pn_squeeze(r, sq, na))) return NULL;
    }
    /* final layout: walk the items; B block (nB dims) first unless the advanced items are
     * adjacent, in which case it sits where the first one is */
    int adjacent = p->nadv > 0 && last_adv - first_adv + 1 == nadv_items;
    int order[2 * PP_MAXDIM], no = 0, news[2 * PP_MAXDIM], nn = 0, kdim = 0;
    if (p->nadv > 0 && !adjacent)
        for (int b = 0; b < nB; b++) order[no++] = b;
    for (int k = 0; k < p->n; k++) {
        const ix_item *it = &p->it[k];
        if (it->kind == IX_SLICE) order[no++] = nB + kdim++;
        else if (it->kind == IX_NONE) news[nn++] = no, order[no++] = -1;
        else if (p->nadv > 0 && adjacent && k == first_adv)
            for (int b = 0; b < nB; b++) order[no++] = b;
    }
    int perm[PP_MAXDIM], np = 0, identity = 1;
    for (int k = 0; k < no; k++)
        if (order[k] >= 0) {
            identity &= order[k] == np;
            perm[np++] = order[k];
        }
    if (!identity && step_to(&r, pn_transpose(r, perm, np))) return NULL;
    if (nn && step_to(&r, pn_expand_dims(r, news, nn))) return NULL;
    return r;
}

PyObject *pp_getitem(PPArray *self, PyObject *idx)
{
    pn_array *a = self->a;
    /* fast path: one int on the first axis */
    if (PyLong_CheckExact(idx) && pn_ndim(a) > 0) {
        Py_ssize_t i = PyLong_AsSsize_t(idx);
        if (i == -1 && PyErr_Occurred()) return NULL;
        int64_t len = pn_shape(a)[0];
        if (i < 0) i += len;
        if (i < 0 || i >= len) {
            PyErr_Format(PyExc_IndexError, "Index %zd is out of bounds for axis 0 with size %lld.",
                         PyLong_AsSsize_t(idx), (long long)len);
            return NULL;
        }
        int nd = pn_ndim(a);
        int64_t start[PP_MAXDIM], stop[PP_MAXDIM];
        for (int d = 0; d < nd; d++) start[d] = 0, stop[d] = pn_shape(a)[d];
        start[0] = i, stop[0] = i + 1;
        pn_array *s = pn_slice(a, start, stop, NULL, nd);
        int zero = 0;
        pn_array *r = pn_squeeze(s, &zero, 1);
        pn_release(s);
        return pp_wrap(r);
    }
    ix_plan p;
    if (parse_index(idx, pn_shape(a), pn_ndim(a), &p)) return NULL;
    pn_array *r = apply_plan(a, &p);
    plan_free(&p);
    return r ? pp_wrap(r) : NULL;
}

/* The update value broadcast to shape (leading size-1 dimensions beyond it dropped), in a's
 * dtype. */
static pn_array *update_value(PyObject *val, pn_array *a, const int64_t *shape, int ndim)
{
    pn_array *v = pp_arr_weak(val, a);
    if (!v) return NULL;
    if (pn_array_dtype(v) != pn_array_dtype(a) && step_to(&v, pn_astype(v, pn_array_dtype(a))))
        return NULL;
    int lead = pn_ndim(v) - ndim;
    if (lead > 0) {
        int axes[PP_MAXDIM];
        for (int d = 0; d < lead; d++) {
            if (pn_shape(v)[d] != 1) break;
            axes[d] = d;
        }
        if (step_to(&v, pn_squeeze(v, axes, lead))) return NULL;
    }
    if (step_to(&v, pn_broadcast_to(v, shape, ndim))) return NULL;
    return v;
}

/* The flat positions a[idx] selects (an arange of a's size indexed the same way). */
static pn_array *selected_positions(pn_array *a, const ix_plan *p)
{
    int64_t size = pn_size(a);
    pn_array *ids = pn_arange(0, (double)size, 1, size > INT32_MAX ? PN_INT64 : PN_INT32);
    if (!ids) return pp_raise(), NULL;
    if (step_to(&ids, pn_reshape(ids, pn_shape(a), pn_ndim(a)))) return NULL;
    pn_array *sel = apply_plan(ids, p);
    pn_release(ids);
    return sel;
}

/* Scatters val at the flat positions of a that idx selects, combined by mode. */
static pn_array *scatter_update(pn_array *a, const ix_plan *p, PyObject *val, int mode)
{
    pn_array *sel = selected_positions(a, p);
    if (!sel) return NULL;
    pn_array *v = update_value(val, a, pn_shape(sel), pn_ndim(sel));
    if (!v) {
        pn_release(sel);
        return NULL;
    }
    if (mode == -1 && step_to(&v, pn_negative(v))) mode = -9;
    if (mode == -2) {
        pn_array *one = pn_scalar(1, pn_array_dtype(a));
        pn_array *q = one ? pn_divide(one, v) : NULL;
        pn_release(one);
        if (step_to(&v, q) == 0 && pn_array_dtype(v) != pn_array_dtype(a))
            step_to(&v, pn_astype(v, pn_array_dtype(a)));
    }
    if (!v || mode == -9) {
        pn_release(sel);
        pn_release(v);
        return NULL;
    }
    pn_scatter_mode m = mode == -1 ? PN_SCATTER_ADD : mode == -2 ? PN_SCATTER_PROD : (pn_scatter_mode)mode;
    int64_t n = pn_size(sel), flat = pn_size(a), upd_shape[2] = {n, 1};
    pn_array *fa = pn_reshape(a, &flat, 1);
    pn_array *fs = pn_reshape(sel, &n, 1);
    pn_array *fv = pn_reshape(v, upd_shape, 2);
    int zero = 0;
    pn_array *s = pn_scatter(fa, &fs, 1, fv, &zero, m);
    pn_array *r = pn_reshape(s, pn_shape(a), pn_ndim(a));
    pn_release(fa);
    pn_release(fs);
    pn_release(fv);
    pn_release(s);
    pn_release(sel);
    pn_release(v);
    if (!r) pp_raise();
    return r;
}

/* a[idx] combined with val by mode (PN_SCATTER_SET/ADD/PROD, -1 subtract, -2 divide) where idx
 * holds only ints, slices, None and Ellipsis: the region a[idx] selects is read as a view,
 * combined elementwise and written back by slice_update, as MLX's SliceUpdate does; its
 * derivatives are those of the elementwise ops (a slice never selects an element twice), so
 * .at[:, :d].multiply(s) trains where scatter_prod has no vjp. */
static pn_array *basic_update(pn_array *a, const ix_plan *p, PyObject *val, int mode)
{
    /* the result's shape (ints dropped, None added) for broadcasting, then the slice's */
    int64_t rshape[2 * PP_MAXDIM], sshape[PP_MAXDIM];
    int nr = 0;
    for (int k = 0; k < p->n; k++) {
        const ix_item *it = &p->it[k];
        if (it->kind == IX_NONE) rshape[nr++] = 1;
        else if (it->kind == IX_SLICE) {
            int64_t s = it->start, e = it->stop < 0 ? -1 : it->stop;
            rshape[nr++] = it->step > 0 ? (e > s ? (e - s + it->step - 1) / it->step : 0)
                                        : (s > e ? (s - e - it->step - 1) / -it->step : 0);
        }
    }
    int nd = pn_ndim(a);
    int64_t start[PP_MAXDIM], stop[PP_MAXDIM], step[PP_MAXDIM];
    for (int k = 0; k < p->n; k++) {
        const ix_item *it = &p->it[k];
        if (it->kind == IX_SLICE) {
            start[it->axis] = it->start, stop[it->axis] = it->stop, step[it->axis] = it->step;
            sshape[it->axis] = 0;
        } else if (it->kind == IX_INT) {
            start[it->axis] = it->i, stop[it->axis] = it->i + 1, step[it->axis] = 1;
            sshape[it->axis] = 1;
        }
    }
    for (int k = 0, j = 0; k < p->n; k++) { /* slice extents, in axis order */
        const ix_item *it = &p->it[k];
        if (it->kind == IX_NONE) j++;
        else if (it->kind == IX_SLICE) sshape[it->axis] = rshape[j++];
    }
    pn_array *v = update_value(val, a, rshape, nr), *r = NULL;
    if (v && mode != PN_SCATTER_SET) {
        pn_array *region = apply_plan(a, p), *c = NULL;
        if (region && mode == -2) { /* divide: times the reciprocal in a's dtype, as scatter */
            pn_array *one = pn_scalar(1, pn_array_dtype(a));
            if (step_to(&v, one ? pn_divide(one, v) : NULL) == 0 &&
                pn_array_dtype(v) != pn_array_dtype(a))
                step_to(&v, pn_astype(v, pn_array_dtype(a)));
            pn_release(one);
            mode = PN_SCATTER_PROD;
        }
        if (region && v) {
            c = mode == -1               ? pn_subtract(region, v)
                : mode == PN_SCATTER_ADD ? pn_add(region, v)
                                         : pn_multiply(region, v);
            if (c && pn_array_dtype(c) != pn_array_dtype(a)) step_to(&c, pn_astype(c, pn_array_dtype(a)));
        }
        pn_release(region);
        pn_release(v);
        v = c;
    }
    if (v && step_to(&v, pn_reshape(v, sshape, nd)) == 0) {
        r = pn_slice_update(a, v, start, stop, step, nd);
        if (!r) pp_raise();
    }
    pn_release(v);
    if (!v && !PyErr_Occurred()) pp_raise();
    return r;
}

pn_array *pp_index_update(pn_array *a, PyObject *idx, PyObject *val, int mode)
{
    ix_plan p;
    if (parse_index(idx, pn_shape(a), pn_ndim(a), &p)) return NULL;
    /* maximum / minimum keep the scatter: their ties give both a and val the cotangent, as
     * MLX's SliceUpdate and Scatter do, where the elementwise ops give it to val only */
    pn_array *r = p.nadv > 0 || mode == PN_SCATTER_MAX || mode == PN_SCATTER_MIN
                      ? scatter_update(a, &p, val, mode)
                      : basic_update(a, &p, val, mode);
    plan_free(&p);
    return r;
}

/* The boolean mask of a[mask] = v (an array, list or buffer of bools), NULL when idx is
 * something else (no error set). */
static pn_array *setitem_mask(PyObject *idx)
{
    pn_array *mask = NULL;
    if (PPArray_Check(idx)) {
        mask = pn_retain(PPARR(idx));
    } else if (PyBool_Check(idx)) {
        mask = pn_scalar(idx == Py_True, PN_BOOL);
        if (!mask) PyErr_Clear();
    } else if (PyList_Check(idx) || (PyObject_CheckBuffer(idx) && !PyBytes_Check(idx))) {
        if (!(mask = pp_from_py(idx, -1))) PyErr_Clear(); /* parse_index reports it */
    }
    if (mask && pn_array_dtype(mask) != PN_BOOL) {
        pn_release(mask);
        mask = NULL;
    }
    return mask;
}

/* a[mask] = v: with a 0-d mask (a[True], a[array(True)]), v broadcast to a replaces all of a
 * when the mask is true, none when false; otherwise MLX's masked_scatter (the mask is not
 * read, so this works under vmap and grad; v's values fill the selected slices in order). */
static pn_array *masked_update(pn_array *a, pn_array *mask, PyObject *val)
{
    pn_array *v = pp_arr(val), *r = NULL;
    if (v && pn_ndim(mask) > 0) {
        r = pn_masked_scatter(a, mask, v);
    } else if (v) {
        pn_array *vc = pn_astype(v, pn_array_dtype(a));
        pn_array *vb = vc ? pn_broadcast_to(vc, pn_shape(a), pn_ndim(a)) : NULL;
        r = vb ? pn_where(mask, vb, a) : NULL;
        pn_release(vc);
        pn_release(vb);
    }
    pn_release(v);
    if (!r && !PyErr_Occurred()) pp_raise();
    return r;
}

int pp_setitem(PPArray *self, PyObject *idx, PyObject *val)
{
    pn_array *a = self->a, *r;
    pn_array *mask = setitem_mask(idx);
    if (mask) {
        r = masked_update(a, mask, val);
        pn_release(mask);
    } else {
        ix_plan p;
        if (parse_index(idx, pn_shape(a), pn_ndim(a), &p)) return -1;
        r = p.nadv > 0 ? scatter_update(a, &p, val, PN_SCATTER_SET)
                       : basic_update(a, &p, val, PN_SCATTER_SET);
        plan_free(&p);
    }
    if (!r) return -1;
    pn_scope_take(r);
    pn_release(self->a);
    self->a = r;
    return 0;
}
