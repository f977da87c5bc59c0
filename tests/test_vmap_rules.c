/* test_vmap_rules.c — the batching rules of the shape, sort, indexing and creation primitives:
 * for every case, pn_vmap's result equals the function applied to each batch item and stacked
 * (the reference, computed here item by item), for mapped axes at the front, in the middle and
 * last, with some inputs unmapped; and the vmap went through the rules, not the generic
 * per-item loop (pnT_vmap_loop_count). Data is random; these ops move values, so results must
 * be equal exactly. */
#include "harness.h"
#include "core/core.h"
#include "transforms/transforms.h"

#include <string.h>

typedef enum {
    OP_RESHAPE, OP_TRANSPOSE, OP_BROADCAST, OP_SLICE, OP_SLICE_UPDATE, OP_CONCAT, OP_SPLIT,
    OP_PAD, OP_PAD_VALUE, OP_ASTYPE, OP_FULL, OP_SORT, OP_ARGSORT, OP_PARTITION, OP_ARGPARTITION,
    OP_TAKE0, OP_TAKE1, OP_TAKE_GRAD, OP_TAKE_ALONG, OP_PUT_ALONG, OP_GATHER, OP_SCATTER,
    OP_AS_STRIDED
} op_kind;

/* One case: the op, the per-item shapes of its inputs, their dtypes (index inputs are
 * integer) and where each input's batch axis goes (-1: unmapped). */
typedef struct {
    const char *name;
    op_kind op;
    int nin;
    int64_t shape[3][4];
    int ndim[3];
    pn_dtype dtype[3];
    int axis[3];
} vcase;

/* take(x, idx, 0) * w for the gradient case; ctx: {idx, w}. */
static int take_times_w(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    pn_array *const *iw = ctx;
    *nout = 1;
    out[0] = pn_multiply(pn_take(in[0], iw[0], 0), iw[1]);
    return out[0] ? 0 : -1;
}

static int fn(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const vcase *c = ctx;
    pn_array *x = in[0], *r = NULL;
    *nout = 1;
    switch (c->op) {
    case OP_RESHAPE: r = pn_reshape(x, (int64_t[]){2, -1}, 2); break;
    case OP_TRANSPOSE: r = pn_transpose(x, (int[]){2, 0, 1}, 3); break;
    case OP_BROADCAST: r = pn_broadcast_to(x, (int64_t[]){2, 3, 4}, 3); break;
    case OP_SLICE:
        r = pn_slice(x, (int64_t[]){1, 5}, (int64_t[]){4, -7}, (int64_t[]){2, -1}, 2);
        break;
    case OP_SLICE_UPDATE:
        r = pn_slice_update(x, in[1], (int64_t[]){1, 0}, (int64_t[]){3, 6}, (int64_t[]){1, 2}, 2);
        break;
    case OP_CONCAT: r = pn_concatenate((pn_array *[]){x, in[1], x}, 3, 1); break;
    case OP_SPLIT:
        *nout = 3;
        return pn_split(x, (int64_t[]){1, 4}, 2, 0, out);
    case OP_PAD:
        r = pn_pad(x, NULL, (int64_t[]){1, 0}, (int64_t[]){2, 1}, 2, pn_scalar(2.5, x->dtype),
                   PN_PAD_CONSTANT);
        break;
    case OP_PAD_VALUE:
        r = pn_pad(x, (int[]){1}, (int64_t[]){2}, (int64_t[]){1}, 1, in[1], PN_PAD_CONSTANT);
        break;
    case OP_ASTYPE: r = pn_astype(pn_multiply(x, pn_scalar(10, x->dtype)), PN_INT32); break;
    case OP_FULL: r = pn_full((int64_t[]){2, 3, 4}, 3, x, PN_FLOAT64); break;
    case OP_SORT: r = pn_sort(x, 1); break;
    case OP_ARGSORT: r = pn_argsort(x, -1); break;
    case OP_PARTITION: r = pn_partition(x, 2, 0); break;
    case OP_ARGPARTITION: r = pn_argpartition(x, 3, 1); break;
    case OP_TAKE0: r = pn_take(x, in[1], 0); break;
    case OP_TAKE1: r = pn_take(x, in[1], 1); break;
    case OP_TAKE_GRAD: { /* the gradient of sum(take(x, idx, 0) * w): an embedding's */
        pn_array *ctx2[2] = {in[1], in[2]}, *o = NULL, *cot = pn_ones_like(in[2]);
        pn_closure *inner = pn_closure_new(take_times_w, ctx2, NULL);
        int n = 0;
        int rc = inner && cot ? pn_vjp(inner, 1, &x, 1, &cot, &n, &o, &r) : -1;
        pn_closure_release(inner);
        if (rc) r = NULL;
        break;
    }
    case OP_TAKE_ALONG: r = pn_take_along_axis(x, in[1], 1); break;
    case OP_PUT_ALONG: r = pn_put_along_axis(x, in[1], in[2], 0); break;
    case OP_GATHER: /* x[idx, j] for two index arrays broadcast together, windows of 1 x 2 */
        r = pn_gather(x, (pn_array *[]){in[1], in[2]}, 2, (int[]){0, 1}, (int64_t[]){1, 2});
        break;
    case OP_SCATTER:
        r = pn_scatter(x, (pn_array *[]){in[1]}, 1, in[2], (int[]){0}, PN_SCATTER_ADD);
        break;
    case OP_AS_STRIDED:
        r = pn_as_strided(x, (int64_t[]){3, 2}, (int64_t[]){2, 1}, 2, 1);
        break;
    }
    out[0] = r;
    return r ? 0 : -1;
}

#define F32 PN_FLOAT32
#define I32 PN_INT32
static const vcase CASES[] = {
    {"reshape", OP_RESHAPE, 1, {{3, 4}}, {2}, {F32}, {1}},
    {"reshape last", OP_RESHAPE, 1, {{3, 4}}, {2}, {F32}, {2}},
    {"transpose", OP_TRANSPOSE, 1, {{3, 4, 5}}, {3}, {F32}, {2}},
    {"broadcast", OP_BROADCAST, 1, {{3, 1}}, {2}, {F32}, {0}},
    {"broadcast middle", OP_BROADCAST, 1, {{3, 1}}, {2}, {F32}, {1}},
    {"slice", OP_SLICE, 1, {{5, 6}}, {2}, {F32}, {1}},
    {"slice_update src", OP_SLICE_UPDATE, 2, {{5, 6}, {2, 3}}, {2, 2}, {F32, F32}, {2, -1}},
    {"slice_update upd", OP_SLICE_UPDATE, 2, {{5, 6}, {2, 3}}, {2, 2}, {F32, F32}, {-1, 1}},
    {"slice_update both", OP_SLICE_UPDATE, 2, {{5, 6}, {2, 3}}, {2, 2}, {F32, F32}, {0, 2}},
    {"concatenate", OP_CONCAT, 2, {{2, 3}, {2, 4}}, {2, 2}, {F32, F32}, {1, -1}},
    {"concatenate both", OP_CONCAT, 2, {{2, 3}, {2, 4}}, {2, 2}, {F32, F32}, {2, 0}},
    {"concatenate second", OP_CONCAT, 2, {{2, 3}, {2, 4}}, {2, 2}, {F32, F32}, {-1, 1}},
    {"split", OP_SPLIT, 1, {{6, 4}}, {2}, {F32}, {1}},
    {"pad", OP_PAD, 1, {{3, 4}}, {2}, {F32}, {2}},
    {"pad mapped value", OP_PAD_VALUE, 2, {{3, 4}, {0}}, {2, 0}, {F32, F32}, {0, 0}},
    {"pad only value mapped", OP_PAD_VALUE, 2, {{3, 4}, {0}}, {2, 0}, {F32, F32}, {-1, 0}},
    {"astype", OP_ASTYPE, 1, {{3, 4}}, {2}, {F32}, {1}},
    {"full", OP_FULL, 1, {{3, 1}}, {2}, {PN_FLOAT64}, {1}},
    {"sort", OP_SORT, 1, {{3, 5}}, {2}, {F32}, {1}},
    {"argsort", OP_ARGSORT, 1, {{3, 5}}, {2}, {F32}, {0}},
    {"partition", OP_PARTITION, 1, {{5, 3}}, {2}, {F32}, {2}},
    {"argpartition", OP_ARGPARTITION, 1, {{3, 5}}, {2}, {F32}, {1}},
    {"take x mapped", OP_TAKE0, 2, {{5, 4}, {3}}, {2, 1}, {F32, I32}, {1, -1}},
    {"take idx mapped", OP_TAKE0, 2, {{5, 4}, {2, 3}}, {2, 2}, {F32, I32}, {-1, 1}},
    {"take both mapped", OP_TAKE1, 2, {{2, 5, 4}, {3}}, {3, 1}, {F32, I32}, {2, 0}},
    {"take axis 1 idx mapped", OP_TAKE1, 2, {{2, 5, 3}, {2, 2}}, {3, 2}, {F32, I32}, {-1, 2}},
    {"take gradient (TakeScatterAdd)", OP_TAKE_GRAD, 3, {{5, 4}, {3}, {3, 4}}, {2, 1, 2},
     {F32, I32, F32}, {1, 0, 0}},
    {"take gradient x unmapped", OP_TAKE_GRAD, 3, {{5, 4}, {3}, {3, 4}}, {2, 1, 2},
     {F32, I32, F32}, {-1, 0, 2}},
    {"take_along_axis", OP_TAKE_ALONG, 2, {{3, 5}, {3, 2}}, {2, 2}, {F32, I32}, {1, 0}},
    {"take_along_axis idx", OP_TAKE_ALONG, 2, {{3, 5}, {3, 2}}, {2, 2}, {F32, I32}, {-1, 2}},
    {"gather x mapped", OP_GATHER, 3, {{5, 4}, {2, 3}, {3}}, {2, 2, 1}, {F32, I32, I32},
     {1, -1, -1}},
    {"gather indices mapped", OP_GATHER, 3, {{5, 4}, {2, 3}, {3}}, {2, 2, 1}, {F32, I32, I32},
     {-1, 2, 0}},
    {"gather all mapped", OP_GATHER, 3, {{5, 4}, {2, 3}, {3}}, {2, 2, 1}, {F32, I32, I32},
     {0, 0, -1}},
    {"scatter add", OP_SCATTER, 3, {{5, 3}, {4}, {4, 1, 3}}, {2, 1, 3}, {F32, I32, F32},
     {1, 0, 2}},
    {"scatter add updates mapped", OP_SCATTER, 3, {{5, 3}, {4}, {4, 1, 3}}, {2, 1, 3},
     {F32, I32, F32}, {-1, -1, 0}},
    {"put_along_axis", OP_PUT_ALONG, 3, {{4, 3}, {2, 3}, {2, 3}}, {2, 2, 2}, {F32, I32, F32},
     {0, -1, 1}},
};
#define NCASES (int)(sizeof CASES / sizeof CASES[0])

/* Random inputs of case c for a batch of B, each with its batch axis where c says; index
 * inputs hold values in [-N, N + 2) of the indexed extent N (negative and past the end, which
 * take wraps and clamps) or, for the along-axis ops and gather, in range. */
static pn_array *make_input(const vcase *c, int i, int64_t B)
{
    int64_t s[5];
    int nd = c->ndim[i], ax = c->axis[i], k = 0;
    for (int d = 0; d <= nd; d++) {
        if (d == ax) s[k++] = B;
        if (d < nd) s[k++] = c->shape[i][d];
    }
    if (ax >= 0) nd++;
    if (!pnC_is_integer(c->dtype[i])) return test_random_array(s, nd, c->dtype[i], -3, 3);
    bool second = c->op == OP_TAKE1 || c->op == OP_TAKE_ALONG || (c->op == OP_GATHER && i == 2);
    int64_t N = c->shape[0][second ? 1 : 0];
    bool wrap = c->op == OP_TAKE0 || c->op == OP_TAKE1 || c->op == OP_TAKE_GRAD ||
                c->op == OP_GATHER || c->op == OP_SCATTER;
    return pn_astype(test_random_array(s, nd, PN_INT32, wrap ? -(double)N : 0, wrap ? N + 2 : N),
                     c->dtype[i]);
}

/* The reference: fn on batch item b of every mapped input (unmapped ones whole), stacked. */
static int reference(const vcase *c, pn_array *const *in, int64_t B, pn_array **ref, int *nref)
{
    pn_array *cols[3][16];
    int n = 0;
    for (int64_t b = 0; b < B; b++) {
        pn_array *item[3], *o[3];
        for (int i = 0; i < c->nin; i++) {
            item[i] = in[i];
            if (c->axis[i] < 0) continue;
            int64_t start[5] = {0}, stop[5];
            for (int d = 0; d < in[i]->ndim; d++) stop[d] = in[i]->shape[d];
            start[c->axis[i]] = b, stop[c->axis[i]] = b + 1;
            item[i] = pn_squeeze(pn_slice(in[i], start, stop, NULL, in[i]->ndim), &c->axis[i], 1);
        }
        if (fn((void *)c, c->nin, item, &n, o)) return -1;
        for (int j = 0; j < n; j++) cols[j][b] = o[j];
    }
    for (int j = 0; j < n; j++) ref[j] = pn_stack(cols[j], (int)B, 0);
    *nref = n;
    return 0;
}

TEST(batching_rules_match_the_loop)
{
    const int64_t B = 3;
    for (int k = 0; k < NCASES; k++) {
        pn_scope_push();
        const vcase *c = &CASES[k];
        pn_array *in[3];
        for (int i = 0; i < c->nin; i++) in[i] = make_input(c, i, B);
        pn_array *ref[3] = {0}, *out[3] = {0};
        int nref = 0, nout = 0;
        CHECK_MSG(reference(c, in, B, ref, &nref) == 0, "%s: reference: %s", c->name,
                  pn_last_error_message());
        pn_clear_error();
        int64_t loops = pnT_vmap_loop_count();
        pn_closure *f = pn_closure_new(fn, (void *)c, NULL);
        pn_closure *v = pn_vmap(f, c->axis, c->nin, NULL, 0);
        int rc = pn_closure_call(v, c->nin, in, &nout, out);
        CHECK_MSG(rc == 0 && nout == nref, "%s: vmap: %s", c->name, pn_last_error_message());
        CHECK_MSG(pnT_vmap_loop_count() == loops, "%s: vmap took the per-item loop", c->name);
        for (int j = 0; rc == 0 && j < nref && j < nout; j++) {
            double *rv = test_to_f64(ref[j]);
            char what[96];
            snprintf(what, sizeof what, "%s output %d", c->name, j);
            /* exact, but for scatter-add: the GPU adds an index's duplicates with atomics, in
             * whatever order they land, so float32 sums may differ by rounding */
            double tol = c->op == OP_SCATTER ? 1e-6 : 0;
            test_check_values(what, out[j], ref[j]->shape, ref[j]->ndim, ref[j]->dtype, rv, tol, tol);
            free(rv);
        }
        pn_clear_error();
        pn_closure_release(v);
        pn_closure_release(f);
        pn_scope_pop();
    }
}

/* A primitive without a rule (AsStrided) still batches, through the per-item loop. */
TEST(as_strided_without_a_rule_takes_the_loop)
{
    pn_scope_push();
    vcase c = {"as_strided", OP_AS_STRIDED, 1, {{5, 3}}, {2}, {F32}, {0}};
    pn_array *in[1] = {make_input(&c, 0, 4)}, *ref[3], *out[3];
    int nref = 0, nout = 0;
    CHECK(reference(&c, in, 4, ref, &nref) == 0);
    int64_t loops = pnT_vmap_loop_count();
    pn_closure *f = pn_closure_new(fn, &c, NULL), *v = pn_vmap(f, c.axis, 1, NULL, 0);
    CHECK(pn_closure_call(v, 1, in, &nout, out) == 0 && nout == 1);
    CHECK(pnT_vmap_loop_count() == loops + 1);
    double *rv = test_to_f64(ref[0]);
    test_check_values("as_strided by loop", out[0], ref[0]->shape, ref[0]->ndim, ref[0]->dtype, rv, 0, 0);
    free(rv);
    pn_closure_release(v);
    pn_closure_release(f);
    pn_scope_pop();
}


