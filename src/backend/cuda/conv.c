/* conv.c — the GPU eval of the Convolution primitive (src/ops/conv.c; semantics of
 * backend/cpu/conv.h): 1x1 stride-1 convolutions are one GEMM batched over the groups; others
 * go through im2col (conv.cu) into a bounded device scratch, in tiles of output rows, each
 * tile one GEMM batched over the groups; depthwise-like convolutions (tiny groups) run a
 * direct kernel. Operands in other layouts are made contiguous on the device first. */
#include "backend/cpu/conv.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/gemm.h"
#include "core/core.h"

/* Largest im2col scratch buffer, in bytes. */
#define PNG_CONV_SCRATCH ((int64_t)64 << 20)

/* Whether the convolution is a plain matrix product of the input rows: a 1x1 kernel at stride
 * 1 over an undilated, unpadded input. */
static bool is_pointwise(const pnG_conv_geom *g)
{
    for (int d = 0; d < 3; d++)
        if (g->k[d] != 1 || g->s[d] != 1 || g->pl[d] != 0 || g->id[d] != 1 || g->out[d] != g->in[d])
            return false;
    return true;
}

/* Runs the convolution of the contiguous x and w into o. */
static int conv_run(const pnG_conv_geom *g, pn_dtype dt, const char *xd, const char *wd,
                    char *od, int stream)
{
    size_t es = pn_dtype_size(dt);
    int64_t kdim = g->KP * g->Cg, rows = g->N * g->P, rowlen = g->G * kdim;
    if (g->G > 1 && g->Cg <= 4 && g->Og <= 4) /* depthwise-like: GEMMs would be slivers */
        return pnG_conv_direct(dt, g, xd, wd, od, stream);
    if (is_pointwise(g)) /* group c: x[:, c Cg : (c+1) Cg] @ w[c Og : (c+1) Og]^T */
        return pnG_gemm(dt, false, true, rows, g->Og, g->Cg, 1.0, xd, g->C, g->Cg, wd, kdim,
                        g->Og * kdim, 0.0, od, g->O, g->Og, g->G, stream);
    int64_t tile = PNG_CONV_SCRATCH / (rowlen * (int64_t)es);
    if (tile < 1) tile = 1;
    if (tile > rows) tile = rows;
    size_t nbytes = (size_t)(tile * rowlen) * es;
    char *col = pnG_malloc(nbytes, stream);
    if (!col) return -1;
    int rc = 0;
    for (int64_t r0 = 0; r0 < rows && rc == 0; r0 += tile) {
        int64_t m = rows - r0 < tile ? rows - r0 : tile;
        rc = pnG_conv_im2col(dt, g, xd, col, r0, m, stream);
        if (rc == 0) /* group c: col[:, c kdim : (c+1) kdim] @ w[c Og : (c+1) Og]^T */
            rc = pnG_gemm(dt, false, true, m, g->Og, kdim, 1.0, col, rowlen, kdim, wd, kdim,
                          g->Og * kdim, 0.0, od + (size_t)(r0 * g->O) * es, g->O, g->Og, g->G,
                          stream);
    }
    pnG_free(col, nbytes, stream);
    return rc;
}

/* See eval.h. */
int pnG_conv_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_conv_params *p = PNC_PARAMS(node, pnK_conv_params);
    pn_array *o = out[0];
    pn_dtype dt = o->dtype;
    if (dt != PN_FLOAT16 && dt != PN_BFLOAT16 && dt != PN_FLOAT32 && dt != PN_FLOAT64)
        return PNG_UNSUPPORTED;
    int stream = node->stream.index;
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    pnG_conv_geom g;
    pnK_conv_geom_init(&g, p, in[0], in[1], o);
    if (g.KP * g.Cg == 0) /* no input channels or no taps: the sums are empty */
        return pnG_gemm_scale(dt, 1, o->size, 0.0, pnC_data(o), o->size, stream);
    pn_array *x = pnC_contiguous(in[0]), *w = pnC_contiguous(in[1]);
    int rc = x && w ? conv_run(&g, dt, pnC_data(x), pnC_data(w), pnC_data(o), stream) : -1;
    if (x) pnC_decref(x);
    if (w) pnC_decref(w);
    return rc;
}
