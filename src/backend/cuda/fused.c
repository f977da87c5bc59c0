/* fused.c — the GPU eval of a Compiled node (mx.compile's fused elementwise chain): the C glue
 * around pnG_fused_launch (fused.cu). It turns the node's pnF_program into a launch
 * descriptor (result slots reused once a value is dead), copies strided inputs dense, donates
 * an input's buffer to the output when nothing else holds it, and launches once. */
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

int pnG_fused_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnF_program *pg = node->params;
    pn_array *o = out[0];
    const int64_t n = o->size;
    const int stream = node->stream.index;
    pn_dtype dt[PNF_MAX_IN];
    for (int k = 0; k < pg->nin; k++) dt[k] = in[k]->dtype;
    pnG_fused_args a;
    make_args(pg, dt, &a);
    if (a.out_dtype != o->dtype || pnG_fused_launch(&a, false) != 0) return PNG_UNSUPPORTED;
    pn_array *dense[PNF_MAX_IN];
    if (pnG_make_dense(pg->nin, in, dense, stream)) return -1;
    for (int k = 0; k < pg->nin; k++) { /* before a donation moves a buffer away */
        a.in[k] = dense[k]->size ? pnC_data(dense[k]) : NULL;
        a.scalar[k] = dense[k]->size != n;
    }
    /* an input's buffer becomes the output's when nothing else holds it: each element's
     * inputs are read before its result is stored */
    bool given = false;
    for (int k = 0; k < pg->nin && !given && n > 0; k++)
        if (dense[k] == in[k] && in[k]->size == n) given = pnC_donate(o, in[k]);
    int rc = given ? 0 : pnC_alloc_output(o);
    if (rc == 0 && n > 0) {
        a.n = n, a.out = pnC_data(o), a.stream = stream;
        rc = pnG_fused_launch(&a, true);
    }
    pnG_release_dense(pg->nin, in, dense);
    return rc;
}
