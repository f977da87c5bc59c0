/* fused.c — the CPU kernel of a Compiled node (a chain of elementwise ops fused by
 * mx.compile): the output is cut into tiles of a few thousand elements; per tile every op of
 * the program runs through the same row kernel its unfused node uses, on tile-sized scratch
 * buffers that stay in cache, so the results are bit-identical to the unfused graph's. */
#include "backend/cpu/fused.h"

#include <stdlib.h>
#include <string.h>

#include <omp.h>

#define TILE 2048 /* elements per tile (a multiple of 64, like the unfused kernels' splits) */

/* What one op needs at run time. */
typedef struct {
    pnK_row_fn fn;
    pn_dtype src; /* astype: the operand's dtype */
} step;

/* Runs the program over the len elements of a tile: operands from in (the inputs' elements of
 * the tile; stride 0 for a broadcast one) and scratch (op results, tile-sized); the last op
 * writes to out (the tile's output). */
static void run_tile(const pnF_program *pg, const step *st, char *const *in, const int64_t *stride,
                     char *out, char **scratch, int64_t len)
{
    for (int k = 0; k < pg->nops; k++) {
        const pnF_op *op = &pg->ops[k];
        char *p[4];
        int64_t s[4] = {1, 0, 0, 0};
        p[0] = k == pg->nops - 1 ? out : scratch[k];
        for (int i = 0; i < op->nin; i++) {
            int a = op->in[i];
            if (a < pg->nin) {
                s[i + 1] = stride[a];
                p[i + 1] = in[a];
            } else {
                s[i + 1] = 1;
                p[i + 1] = scratch[a - pg->nin];
            }
        }
        if (op->kind == PNF_ASTYPE) {
            if (s[1]) {
                pnC_convert(p[1], st[k].src, p[0], op->dtype, len);
            } else { /* a broadcast scalar: convert once, repeat */
                size_t sz = pn_dtype_size(op->dtype);
                pnC_convert(p[1], st[k].src, p[0], op->dtype, 1);
                for (int64_t i = 1; i < len; i++) memcpy(p[0] + i * (int64_t)sz, p[0], sz);
            }
        } else {
            st[k].fn(len, p, s, &op->p);
        }
    }
}

/* pnC_convert as generated kernels call it (dtypes as int). */
static void convert_for_kernel(const void *src, int st, void *dst, int dt, int64_t n)
{
    pnC_convert(src, (pn_dtype)st, dst, (pn_dtype)dt, n);
}

static int64_t generated_runs; /* pnK_fused_generated_count (atomic builtins) */

int64_t pnK_fused_generated_count(void) { return __atomic_load_n(&generated_runs, __ATOMIC_RELAXED); }

int pnK_fused_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnF_program *pg = node->params;
    pn_array *o = out[0];
    const int64_t n = o->size;
    step st[PNF_MAX_OPS];
    pn_dtype dt[PNF_MAX_IN + PNF_MAX_OPS];
    for (int i = 0; i < pg->nin; i++) dt[i] = in[i]->dtype;
    for (int k = 0; k < pg->nops; k++) {
        const pnF_op *op = &pg->ops[k];
        pn_dtype t = dt[op->in[op->kind == PNF_WHERE ? 1 : 0]];
        st[k].src = t;
        st[k].fn = op->kind == PNF_ASTYPE ? NULL : pnK_ew_row(op->kind, op->p.op, t);
        if (op->kind != PNF_ASTYPE && !st[k].fn)
            return pn_set_error(PN_ERR_BACKEND, "[Compiled] %s is not implemented on the CPU for %s.",
                                op->prim->name, pn_dtype_name(t));
        dt[pg->nin + k] = op->dtype;
    }
    if (pnC_alloc_output(o)) return -1;
    if (n == 0) return 0;
    /* inputs of a smaller shape become broadcast views; strided inputs whose rows are dense or
     * one repeated element are gathered per tile (no copy of the whole array: a bias row
     * broadcast over a matrix, a column of means), others (transposes, steps) copied whole
     * first, in tiles that suit them */
    pn_array *held[PNF_MAX_IN] = {0}, *view[PNF_MAX_IN] = {0}, *src[PNF_MAX_IN];
    bool gather[PNF_MAX_IN] = {0};
    char *base[PNF_MAX_IN];
    int64_t stride[PNF_MAX_IN];
    size_t es[PNF_MAX_IN], gather_bytes = 0;
    int rc = 0;
    for (int i = 0; i < pg->nin && rc == 0; i++) {
        pn_array *a = in[i];
        if (a->size != n && a->size != 1) { /* a smaller shape broadcast: a view of the output's */
            if (!(view[i] = pnC_broadcast_view(a, o->shape, o->ndim))) {
                rc = -1;
                break;
            }
            a = view[i];
        }
        src[i] = a;
        es[i] = pn_dtype_size(a->dtype);
        stride[i] = a->size == n ? 1 : 0;
        if (a->size == n && !pnC_row_contiguous(a)) {
            const int64_t *strides = a->strides;
            pnC_nditer it;
            pnC_nditer_init(&it, a->ndim, a->shape, 1, &strides);
            gather[i] = it.inner >= 64 && (it.inner_stride[0] == 0 || it.inner_stride[0] == 1);
            if (gather[i]) gather_bytes += TILE * es[i];
            else if (!(held[i] = pnC_contiguous(a))) rc = -1;
            else a = held[i];
        }
        base[i] = rc == 0 ? (char *)pnC_data(a) : NULL;
    }
    /* the program's generated kernel when there is one (the same bits), else the interpreter */
    pnK_fused_kernel_fn gen = NULL;
    pnK_ew_params prm[PNF_MAX_OPS];
    pnK_fused_vector_fn vfn[PNF_MAX_OPS];
    if (rc == 0) {
        uint32_t bcast = 0;
        for (int i = 0; i < pg->nin; i++) bcast |= (uint32_t)(stride[i] == 0) << i;
        gen = pnK_fused_generated(pg, dt, bcast, n);
    }
    if (gen) {
        for (int k = 0; k < pg->nops; k++) {
            prm[k] = pg->ops[k].p;
            vfn[k] = pg->ops[k].kind == PNF_UNARY ? pnK_ew_vector_fn(pg->ops[k].p.op) : NULL;
        }
        __atomic_fetch_add(&generated_runs, 1, __ATOMIC_RELAXED);
    }
    const int64_t ntiles = (n + TILE - 1) / TILE;
    char *obase = pnC_data(o);
    size_t oes = pn_dtype_size(o->dtype);
    int failed = 0;
    if (rc == 0) {
#pragma omp parallel if (n > PNC_PAR_GRAIN)
        {
            char *scratch[PNF_MAX_OPS] = {0}, *tile_in[PNF_MAX_IN];
            const size_t interp_bytes = gen ? 0 : (size_t)pg->nops * TILE * 16;
            char *mem = interp_bytes + gather_bytes ? malloc(interp_bytes + gather_bytes + 64) : NULL;
            if (interp_bytes + gather_bytes && !mem) {
#pragma omp atomic write
                failed = 1;
            }
            for (int k = 0; mem && interp_bytes && k < pg->nops; k++) scratch[k] = mem + (size_t)k * TILE * 16;
            char *next = mem + interp_bytes;
            for (int i = 0; mem && i < pg->nin; i++)
                if (gather[i]) tile_in[i] = next, next += TILE * es[i];
#pragma omp for schedule(static)
            for (int64_t t = 0; t < ntiles; t++) {
                if (!mem && interp_bytes + gather_bytes) continue;
                int64_t lo = t * TILE, len = n - lo < TILE ? n - lo : TILE;
                /* the tile's inputs: dense ones at lo, broadcast elements, gathered rows */
                for (int i = 0; i < pg->nin; i++) {
                    if (gather[i]) pnC_gather_range(src[i], lo, len, tile_in[i]);
                    else tile_in[i] = base[i] + lo * stride[i] * (int64_t)es[i];
                }
                if (gen)
                    gen(0, len, tile_in, obase + lo * (int64_t)oes, prm, vfn, convert_for_kernel);
                else
                    run_tile(pg, st, tile_in, stride, obase + lo * (int64_t)oes, scratch, len);
            }
            free(mem);
        }
    }
    for (int i = 0; i < pg->nin; i++) {
        if (held[i]) pnC_decref(held[i]);
        if (view[i]) pnC_decref(view[i]);
    }
    if (rc == 0 && failed) rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[Compiled] Out of memory.");
    return rc;
}
