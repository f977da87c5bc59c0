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

/* Runs the program over elements [lo, lo + len): operands from base (inputs; stride 0 for a
 * broadcast one) and scratch (op results, tile-sized); the last op writes to the output. */
static void run_tile(const pnF_program *pg, const step *st, char *const *base, const int64_t *stride,
                     const size_t *es, char *out, size_t out_es, char **scratch, int64_t lo,
                     int64_t len)
{
    for (int k = 0; k < pg->nops; k++) {
        const pnF_op *op = &pg->ops[k];
        char *p[4];
        int64_t s[4] = {1, 0, 0, 0};
        p[0] = k == pg->nops - 1 ? out + lo * (int64_t)out_es : scratch[k];
        for (int i = 0; i < op->nin; i++) {
            int a = op->in[i];
            if (a < pg->nin) {
                s[i + 1] = stride[a];
                p[i + 1] = base[a] + lo * stride[a] * (int64_t)es[a];
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
    pn_array *held[PNF_MAX_IN] = {0}; /* contiguous copies of strided inputs */
    char *base[PNF_MAX_IN];
    int64_t stride[PNF_MAX_IN];
    size_t es[PNF_MAX_IN];
    int rc = 0;
    for (int i = 0; i < pg->nin && rc == 0; i++) {
        pn_array *a = in[i];
        es[i] = pn_dtype_size(a->dtype);
        stride[i] = a->size == n ? 1 : 0;
        if (a->size == n && !pnC_row_contiguous(a)) {
            if (!(held[i] = pnC_contiguous(a))) rc = -1;
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
            char *scratch[PNF_MAX_OPS] = {0};
            char *mem = gen ? NULL : malloc((size_t)pg->nops * TILE * 16 + 64);
            if (!gen && !mem) {
#pragma omp atomic write
                failed = 1;
            }
            for (int k = 0; mem && k < pg->nops; k++) scratch[k] = mem + (size_t)k * TILE * 16;
#pragma omp for schedule(static)
            for (int64_t t = 0; t < ntiles; t++) {
                int64_t lo = t * TILE, len = n - lo < TILE ? n - lo : TILE;
                if (gen)
                    gen(lo, len, base, obase, prm, vfn, convert_for_kernel);
                else if (mem)
                    run_tile(pg, st, base, stride, es, obase, oes, scratch, lo, len);
            }
            free(mem);
        }
    }
    for (int i = 0; i < pg->nin; i++)
        if (held[i]) pnC_decref(held[i]);
    if (rc == 0 && failed) rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[Compiled] Out of memory.");
    return rc;
}
