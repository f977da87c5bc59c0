/* fused.c — the GPU eval of a Compiled node (mx.compile's fused elementwise chain): the C glue
 * around pnG_fused_launch (fused.cu). It turns the node's pnF_program into a launch
 * descriptor (result slots reused once a value is dead), passes strided inputs (transposes,
 * broadcasts) as they are to a generated kernel and copies them dense for the interpreter,
 * donates an input's buffer to the output when nothing else holds it, and launches once. */
#include "backend/cuda/fused.h"
#include "backend/cpu/fused.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

#include <string.h>

_Static_assert(PNG_FUSED_MAX_OPS == PNF_MAX_OPS && PNG_FUSED_MAX_IN == PNF_MAX_IN, "fused sizes");
_Static_assert((int)PNG_FUSED_UNARY == (int)PNF_UNARY && (int)PNG_FUSED_BINARY == (int)PNF_BINARY &&
                   (int)PNG_FUSED_WHERE == (int)PNF_WHERE && (int)PNG_FUSED_ASTYPE == (int)PNF_ASTYPE,
               "fused kinds");

/* The launch descriptor of pg over inputs of dtypes in_dt (pointers, n and stream left to
 * the caller). Slots: a result takes the lowest slot free when it is computed; an operand's
 * slot frees after its last reader (which may write its result there: operands are read
 * before the result is written). */
static void make_args(const pnF_program *pg, const pn_dtype *in_dt, pnG_fused_args *a)
{
    memset(a, 0, sizeof *a);
    const int nin = pg->nin, nops = pg->nops;
    a->nin = nin, a->nops = nops;
    a->out_dtype = nops > 0 ? pg->ops[nops - 1].dtype : PN_FLOAT32;
    pn_dtype dt[PNF_MAX_IN + PNF_MAX_OPS];
    int last[PNF_MAX_OPS], slot[PNF_MAX_OPS];
    bool busy[PNF_MAX_OPS] = {false};
    for (int i = 0; i < nin; i++) dt[i] = in_dt[i], a->in_dtype[i] = in_dt[i];
    for (int k = 0; k < nops; k++) {
        last[k] = k == nops - 1 ? nops : k;
        for (int j = 0; j < pg->ops[k].nin; j++)
            if (pg->ops[k].in[j] >= nin) last[pg->ops[k].in[j] - nin] = k;
    }
    for (int k = 0; k < nops; k++) {
        const pnF_op *op = &pg->ops[k];
        pnG_fused_op *o = &a->ops[k];
        o->kind = op->kind;
        bool ew = op->kind == PNF_UNARY || op->kind == PNF_BINARY;
        o->op = ew ? (int16_t)op->p.op : 0;
        o->flag = ew ? op->p.flag : 0;
        o->p0 = ew ? op->p.p0 : 0, o->p1 = ew ? op->p.p1 : 0, o->p2 = ew ? op->p.p2 : 0;
        o->t = (int16_t)dt[op->in[op->kind == PNF_WHERE ? 1 : 0]];
        o->dst = (int16_t)op->dtype;
        for (int j = 0; j < op->nin; j++) {
            int v = op->in[j];
            o->in[j] = (int16_t)(v < nin ? v : nin + slot[v - nin]);
        }
        for (int j = 0; j < op->nin; j++)
            if (op->in[j] >= nin && last[op->in[j] - nin] == k) busy[slot[op->in[j] - nin]] = false;
        int s = 0;
        while (busy[s]) s++;
        busy[s] = true;
        slot[k] = s;
        o->out = (int16_t)s;
        if (s + 1 > a->nslots) a->nslots = s + 1;
        dt[nin + k] = op->dtype;
    }
}

bool pnG_fused_supported(const pnF_program *pg, const pn_dtype *in_dtypes)
{
    pnG_fused_args a;
    make_args(pg, in_dtypes, &a);
    return pnG_fused_launch(&a, false) == 0;
}

/* Which inputs a generated kernel reads where they are (strided[k]: a view of the output's
 * shape that is not row-contiguous: a transpose, a broadcast) and their strides over the
 * output's shape, unit dimensions dropped and dimensions merged where every strided input
 * allows it. Without a generated kernel, or past its dimension limit, none is strided. */
static void plan_strided(pnG_fused_args *a, const pn_array *o, pn_array *const *in, bool *strided)
{
    const int nin = a->nin;
    int nd = 0;
    bool any = false;
    for (int k = 0; k < nin; k++) {
        strided[k] = o->size > 1 && in[k]->size == o->size && !pnC_row_contiguous(in[k]) &&
                     in[k]->ndim == o->ndim && !memcmp(in[k]->shape, o->shape, sizeof(int64_t) * (size_t)o->ndim);
        any |= strided[k];
    }
    if (!any || !pnG_fused_jit_ready()) {
        for (int k = 0; k < nin; k++) strided[k] = false;
        return;
    }
    for (int d = 0; d < o->ndim; d++) {
        if (o->shape[d] == 1) continue;
        bool merge = nd > 0;
        for (int k = 0; k < nin && merge; k++)
            merge = !strided[k] || a->strides[k][nd - 1] == in[k]->strides[d] * o->shape[d];
        if (!merge && nd == PNG_MAX_NDIM) {
            nd++; /* too many: none strided */
            break;
        }
        int at = merge ? nd - 1 : nd++;
        a->shape[at] = merge ? a->shape[at] * o->shape[d] : o->shape[d];
        for (int k = 0; k < nin; k++)
            if (strided[k]) a->strides[k][at] = in[k]->strides[d];
    }
    if (nd > PNG_MAX_NDIM) { /* too many dimensions: none strided */
        for (int k = 0; k < nin; k++) strided[k] = false;
    }
    a->ndim = nd;
}

static int fused_run(pnG_fused_args *ap, pn_array *o, pn_array *const *in, int stream);

int pnG_fused_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnF_program *pg = node->params;
    pn_array *o = out[0];
    const int64_t n = o->size;
    const int stream = node->stream.index, nin = pg->nin;
    pn_dtype dt[PNF_MAX_IN];
    for (int k = 0; k < nin; k++) dt[k] = in[k]->dtype;
    pnG_fused_args a;
    make_args(pg, dt, &a);
    if (a.out_dtype != o->dtype || pnG_fused_launch(&a, false) != 0) return PNG_UNSUPPORTED;
    /* inputs of a smaller shape become broadcast views of the output's (read in place by a
     * generated kernel, copied dense for the interpreter) */
    pn_array *view[PNF_MAX_IN] = {0}, *bin[PNF_MAX_IN];
    for (int k = 0; k < nin; k++) {
        bin[k] = in[k];
        if (in[k]->size != n && in[k]->size != 1 && !(bin[k] = view[k] = pnC_broadcast_view(in[k], o->shape, o->ndim))) {
            for (int j = 0; j < k; j++)
                if (view[j]) pnC_decref(view[j]);
            return -1;
        }
    }
    int rc = fused_run(&a, o, bin, stream);
    for (int k = 0; k < nin; k++)
        if (view[k]) pnC_decref(view[k]);
    return rc;
}

/* pnG_fused_eval's launch of a over inputs in (of the output's size, or one element). */
static int fused_run(pnG_fused_args *ap, pn_array *o, pn_array *const *in, int stream)
{
    pnG_fused_args a = *ap;
    const int nin = a.nin;
    const int64_t n = o->size;
    bool strided[PNF_MAX_IN];
    plan_strided(&a, o, in, strided);
    pn_array *dense[PNF_MAX_IN];
    for (int k = 0; k < nin; k++) { /* the others dense (a copy where they are not) */
        dense[k] = in[k];
        if (!strided[k] && pnG_make_dense(1, &in[k], &dense[k], stream)) {
            pnG_release_dense(k, in, dense);
            return -1;
        }
    }
    for (int k = 0; k < nin; k++) { /* before a donation moves a buffer away */
        a.in[k] = dense[k]->size ? pnC_data(dense[k]) : NULL;
        a.scalar[k] = dense[k]->size != n;
        a.strided[k] = strided[k];
    }
    /* an input's buffer becomes the output's when nothing else holds it: each element's
     * inputs are read before its result is stored (a strided input keeps its buffer) */
    bool given = false;
    for (int k = 0; k < nin && !given && n > 0; k++)
        if (dense[k] == in[k] && !strided[k] && in[k]->size == n) given = pnC_donate(o, in[k]);
    int rc = given ? 0 : pnC_alloc_output(o);
    if (rc == 0 && n > 0) {
        a.n = n, a.out = pnC_data(o), a.stream = stream;
        rc = pnG_fused_launch(&a, true);
        if (rc == PNG_FUSED_NEEDS_DENSE) { /* the generated kernel failed just now: the
                                              interpreter, over dense copies */
            rc = 0;
            for (int k = 0; k < nin && rc == 0; k++)
                if (strided[k]) {
                    rc = pnG_make_dense(1, &in[k], &dense[k], stream);
                    if (rc == 0) a.in[k] = pnC_data(dense[k]), a.strided[k] = false;
                    else dense[k] = in[k];
                }
            if (rc == 0) rc = pnG_fused_launch(&a, true);
        }
    }
    pnG_release_dense(nin, in, dense);
    return rc;
}
