/* conv.c — the GPU eval of the Convolution primitive (src/ops/conv.c; semantics of
 * backend/cpu/conv.h). First cuDNN (cudnn.h) when it is loaded and the node maps exactly onto
 * one of its problems: a forward convolution (no input dilation, symmetric padding), a
 * backward-data pass (an input-dilated, stride-1 node: transposed convolutions and input
 * gradients) or, for nodes conv_vjp marks as weight gradients, a backward-filter pass.
 * Otherwise: 1x1 stride-1 convolutions are one GEMM batched over the groups; others go
 * through im2col (conv.cu) into a bounded device scratch, in tiles of output rows, each tile
 * one GEMM batched over the groups; depthwise-like convolutions (tiny groups) run a direct
 * kernel. Operands in other layouts are made contiguous on the device first. */
#include "backend/cpu/conv.h"
#include "backend/cuda/cudnn.h"
#include "backend/cuda/eval.h"
#include "backend/cuda/gemm.h"
#include "core/core.h"

#include <limits.h>
#include <string.h>

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

/* ───────────────────────────── through cuDNN ───────────────────────────── */

/* A strided device view: shape and element strides, up to PNG_MAX_NDIM axes. */
typedef struct dview {
    char *data;
    int nd;
    int64_t shape[PNG_MAX_NDIM], strides[PNG_MAX_NDIM];
} dview;

/* Device buffers of one cuDNN call, freed together after it, in stream order. */
typedef struct scratch {
    int n;
    void *p[3];
    size_t bytes[3];
} scratch;

static void *scratch_alloc(scratch *s, size_t nbytes, int stream)
{
    void *p = pnG_malloc(nbytes ? nbytes : 1, stream);
    if (p) s->p[s->n] = p, s->bytes[s->n++] = nbytes ? nbytes : 1;
    return p;
}

static void scratch_free(scratch *s, int stream)
{
    for (int i = 0; i < s->n; i++) pnG_free(s->p[i], s->bytes[i], stream);
}

/* v's elements as a packed row-major buffer: v's own data when it already is one, else a
 * device copy in new scratch. NULL with an error. */
static char *packed(const dview *v, pn_dtype dt, scratch *s, int stream)
{
    int64_t acc = 1, rs[PNG_MAX_NDIM];
    bool dense = true;
    for (int d = v->nd - 1; d >= 0; d--) {
        rs[d] = acc;
        dense &= v->shape[d] == 1 || v->strides[d] == acc;
        acc *= v->shape[d];
    }
    if (dense) return v->data;
    char *buf = scratch_alloc(s, (size_t)acc * pn_dtype_size(dt), stream);
    if (!buf) return NULL;
    pnG_strided_copy(v->data, v->strides, dt, buf, rs, dt, v->shape, v->nd, stream);
    return pnC_failed() ? NULL : buf;
}

/* The view of a's axes in the order perm (n of them). */
static dview view_of(const pn_array *a, const int *perm, int n)
{
    dview v = {.data = pnC_data(a), .nd = n};
    for (int i = 0; i < n; i++) v.shape[i] = a->shape[perm[i]], v.strides[i] = a->strides[perm[i]];
    return v;
}

static bool dim_ok(int64_t v) { return v >= 1 && v <= INT_MAX; }

/* Sets c's spatial extents from axes 3 - c->nsp .. 2 of the given per-axis arrays (geometry
 * order) and checks them against cuDNN's output formula with symmetric padding pad; then the
 * channel counts and tensor sizes against cuDNN's int limits. */
static bool set_problem(pnG_cudnn_conv *c, const int64_t *in, const int64_t *filt,
                        const int64_t *out, const int64_t *pad, const int64_t *stride,
                        const int64_t *dil)
{
    int lead = 3 - c->nsp;
    int64_t xs = (int64_t)c->N * c->C, ys = (int64_t)c->N * c->K, ws = (int64_t)c->K * (c->C / c->G);
    for (int i = 0; i < c->nsp; i++) {
        int d = lead + i;
        int64_t span = in[d] + 2 * pad[d] - ((filt[d] - 1) * dil[d] + 1);
        if (pad[d] < 0 || pad[d] > INT_MAX || span < 0 || span / stride[d] + 1 != out[d] ||
            !dim_ok(in[d]) || !dim_ok(filt[d]) || !dim_ok(out[d]) || !dim_ok(stride[d]) ||
            !dim_ok(dil[d]))
            return false;
        c->in[i] = (int)in[d], c->filt[i] = (int)filt[d], c->out[i] = (int)out[d];
        c->pad[i] = (int)pad[d], c->stride[i] = (int)stride[d], c->dil[i] = (int)dil[d];
        xs *= in[d], ys *= out[d], ws *= filt[d];
    }
    return c->N >= 1 && c->C >= 1 && c->K >= 1 && c->C % c->G == 0 && c->K % c->G == 0 &&
           xs <= INT_MAX && ys <= INT_MAX && ws <= INT_MAX;
}

/* The node as cuDNN's forward problem: x = in[0], w = in[1], y = o, padding pad_lo on both
 * sides (exact when the output extents agree: the high side then reads only zeros either
 * way). */
static int cudnn_forward(pnG_cudnn_conv *c, const pnK_conv_geom *g, pn_array *const *in,
                         pn_array *o, scratch *s, int stream)
{
    c->op = PNG_CUDNN_FORWARD;
    c->N = (int)g->N, c->C = (int)g->C, c->K = (int)g->O, c->flip = g->flip;
    if (g->N > INT_MAX || g->C > INT_MAX || g->O > INT_MAX ||
        !set_problem(c, g->in, g->k, g->out, g->pl, g->s, g->kd))
        return PNG_UNSUPPORTED;
    int nd = in[0]->ndim, id[PNG_MAX_NDIM];
    for (int i = 0; i < nd; i++) id[i] = i;
    dview xv = view_of(in[0], id, nd), wv = view_of(in[1], id, nd);
    char *x = packed(&xv, o->dtype, s, stream), *w = x ? packed(&wv, o->dtype, s, stream) : NULL;
    return w ? pnG_cudnn_run(c, x, w, pnC_data(o), stream) : -1;
}

/* An input-dilated, stride-1 node (dy = in[0] dilated by idil, correlated with in[1]) as
 * cuDNN's backward-data pass of the forward convolution it transposes: forward stride idil,
 * padding K~ - 1 - pad_lo, the node's kernel dilation, dx = o; the forward filter is the
 * node's weight with its channel axes swapped back within each group, and the node's flip
 * inverted. */
static int cudnn_backward_data(pnG_cudnn_conv *c, const pnK_conv_geom *g, pn_array *const *in,
                               pn_array *o, scratch *s, int stream)
{
    c->op = PNG_CUDNN_BACKWARD_DATA;
    c->N = (int)g->N, c->C = (int)g->O, c->K = (int)g->C, c->flip = !g->flip;
    int64_t pad[3];
    for (int d = 0; d < 3; d++) pad[d] = (g->k[d] - 1) * g->kd[d] - g->pl[d];
    if (g->N > INT_MAX || g->C > INT_MAX || g->O > INT_MAX ||
        !set_problem(c, g->out, g->k, g->in, pad, g->id, g->kd))
        return PNG_UNSUPPORTED;
    /* node weight (G Og, T..., Cg) -> forward filter (G, Cg, T..., Og) */
    const pn_array *wn = in[1];
    int ns = wn->ndim - 2;
    int64_t Og = g->O / g->G;
    dview wv = {.data = pnC_data(wn), .nd = ns + 3};
    wv.shape[0] = g->G, wv.strides[0] = Og * wn->strides[0];
    wv.shape[1] = g->Cg, wv.strides[1] = wn->strides[ns + 1];
    for (int i = 0; i < ns; i++) wv.shape[2 + i] = wn->shape[1 + i], wv.strides[2 + i] = wn->strides[1 + i];
    wv.shape[ns + 2] = Og, wv.strides[ns + 2] = wn->strides[0];
    int nd = in[0]->ndim, id[PNG_MAX_NDIM];
    for (int i = 0; i < nd; i++) id[i] = i;
    dview yv = view_of(in[0], id, nd);
    char *w = packed(&wv, o->dtype, s, stream), *y = w ? packed(&yv, o->dtype, s, stream) : NULL;
    return y ? pnG_cudnn_run(c, pnC_data(o), w, y, stream) : -1;
}

/* A weight-gradient node (conv_vjp: in[0] (B, S..., G Nb) the forward input with batch and
 * channels swapped, in[1] (O, S'..., Nb) the cotangent likewise, o (B, K..., O)) as cuDNN's
 * backward-filter pass: x (Nb, S..., G B), dy (Nb, S'..., O), stride = the node's kernel
 * dilation, dilation = the node's stride, padding pad_lo; dw (O, K..., B) into scratch, then
 * transposed into o. Exact for any node of that form (the hint only picks the mapping). */
static int cudnn_backward_filter(pnG_cudnn_conv *c, const pnK_conv_geom *g, pn_array *const *in,
                                 pn_array *o, scratch *s, int stream)
{
    c->op = PNG_CUDNN_BACKWARD_FILTER;
    c->N = (int)g->Cg, c->C = (int)(g->G * g->N), c->K = (int)g->O, c->flip = 0;
    if (g->Cg > INT_MAX || g->G * g->N > INT_MAX || g->O > INT_MAX ||
        !set_problem(c, g->in, g->out, g->k, g->pl, g->kd, g->s))
        return PNG_UNSUPPORTED;
    const pn_array *a = in[0], *b = in[1];
    int ns = a->ndim - 2;
    dview xv = {.data = pnC_data(a), .nd = ns + 3}, yv = {.data = pnC_data(b), .nd = ns + 2};
    xv.shape[0] = g->Cg, xv.strides[0] = a->strides[ns + 1];
    for (int i = 0; i < ns; i++) xv.shape[1 + i] = a->shape[1 + i], xv.strides[1 + i] = a->strides[1 + i];
    xv.shape[ns + 1] = g->G, xv.strides[ns + 1] = g->Cg * a->strides[ns + 1];
    xv.shape[ns + 2] = g->N, xv.strides[ns + 2] = a->strides[0];
    int perm[PNG_MAX_NDIM];
    perm[0] = ns + 1, perm[ns + 1] = 0;
    for (int i = 0; i < ns; i++) perm[1 + i] = 1 + i;
    yv = view_of(b, perm, ns + 2);
    size_t es = pn_dtype_size(o->dtype);
    char *x = packed(&xv, o->dtype, s, stream), *y = x ? packed(&yv, o->dtype, s, stream) : NULL;
    char *dw = y ? scratch_alloc(s, (size_t)o->size * es, stream) : NULL;
    if (!dw) return -1;
    int rc = pnG_cudnn_run(c, x, dw, y, stream);
    if (rc) return rc;
    /* dw (O, K..., B) read as o's shape (B, K..., O) */
    int64_t src[PNG_MAX_NDIM], dst[PNG_MAX_NDIM], acc = g->N;
    for (int i = ns; i >= 1; i--) src[i] = acc, acc *= o->shape[i];
    src[0] = 1, src[ns + 1] = acc;
    pnC_row_strides(o->shape, o->ndim, dst);
    pnG_strided_copy(dw, src, o->dtype, pnC_data(o), dst, o->dtype, o->shape, o->ndim, stream);
    return pnC_failed() ? -1 : 0;
}

/* The node through cuDNN when it maps (see the file comment): 0, -1 with an error, or
 * PNG_UNSUPPORTED (nothing written: the other paths run). */
static int conv_cudnn(const pnK_conv_params *p, const pnK_conv_geom *g, pn_array *const *in,
                      pn_array *o, int stream)
{
    if (!pnG_cudnn_available()) return PNG_UNSUPPORTED;
    bool idil1 = true, stride1 = true;
    for (int d = 0; d < 3; d++) idil1 &= g->id[d] == 1, stride1 &= g->s[d] == 1;
    pnG_cudnn_conv c;
    memset(&c, 0, sizeof c);
    c.dtype = o->dtype;
    c.nsp = p->nsp <= 2 ? 2 : 3; /* cuDNN wants 4-d or 5-d tensors: 1-d gets a unit axis */
    c.G = g->G;
    scratch s = {0};
    int rc = PNG_UNSUPPORTED;
    if (p->role == PNK_CONV_ROLE_WEIGHT_GRAD && idil1 && !g->flip)
        rc = cudnn_backward_filter(&c, g, in, o, &s, stream);
    if (rc == PNG_UNSUPPORTED && idil1)
        rc = cudnn_forward(&c, g, in, o, &s, stream);
    else if (rc == PNG_UNSUPPORTED && stride1)
        rc = cudnn_backward_data(&c, g, in, o, &s, stream);
    scratch_free(&s, stream);
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
    int rc = conv_cudnn(p, &g, in, o, stream);
    if (rc != PNG_UNSUPPORTED) return rc;
    pn_array *x = pnC_contiguous(in[0]), *w = pnC_contiguous(in[1]);
    rc = x && w ? conv_run(&g, dt, pnC_data(x), pnC_data(w), pnC_data(o), stream) : -1;
    if (x) pnC_decref(x);
    if (w) pnC_decref(w);
    return rc;
}
