/* closure.c — pn_closure, the C function objects that transformations take and return
 * (function pointer + context + destructor, reference counted), and the scope helpers that
 * hand a transformation's results to its caller as distinct, owned arrays. */
#include "transforms.h"
#include "transforms/trace.h"

#include <stdlib.h>

struct pn_closure {
    atomic_int refs;
    pn_fn fn;
    void *ctx;
    void (*destroy)(void *ctx);
};

/* Wraps fn and ctx in a closure with one reference (the caller's). NULL with an error when fn
 * is NULL or memory runs out; destroy(ctx) then runs at once so ctx does not leak. */
pn_closure *pn_closure_new(pn_fn fn, void *ctx, void (*destroy)(void *ctx))
{
    if (!fn) {
        if (destroy) destroy(ctx);
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[closure] The function pointer is NULL.");
    }
    pn_closure *f = malloc(sizeof *f);
    if (!f) {
        if (destroy) destroy(ctx);
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[closure] Out of memory.");
    }
    atomic_init(&f->refs, 1);
    f->fn = fn;
    f->ctx = ctx;
    f->destroy = destroy;
    return f;
}

/* Adds a reference to f (NULL-safe). Returns f. */
pn_closure *pn_closure_retain(pn_closure *f)
{
    if (f) atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    return f;
}

/* Drops a reference; the last one runs destroy(ctx) and frees f. NULL is ignored. */
void pn_closure_release(pn_closure *f)
{
    if (!f || atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1) return;
    if (f->destroy) f->destroy(f->ctx);
    free(f);
}

/* Calls f on nin inputs. The function runs inside its own scope; its outputs come back as
 * distinct arrays owned like op results (an input returned as is, or one output returned
 * twice, becomes a new handle). Returns 0, or -1 with an error (a function that fails without
 * setting one gets a generic message); on failure *nout is 0 and nothing leaks. */
int pn_closure_call(pn_closure *f, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    if (nout) *nout = 0;
    if (!f || !nout || !out || nin < 0 || (nin > 0 && !in))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[closure] Bad arguments (NULL closure, input or output list).");
    if (!pnC_inputs_ok("closure", nin, in)) return -1;
    pn_scope_push();
    int n = 0;
    int rc = f->fn(f->ctx, nin, in, &n, out);
    if (rc == 0 && (n < 0 || n > pnT_out_capacity())) {
        rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                          "[closure] The function returned %d outputs (at most %d are allowed).",
                          n, pnT_out_capacity());
        n = 0;
    }
    if (rc == 0) {
        for (int j = 0; j < n; j++) {
            if (!out[j]) {
                rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                                  "[closure] The function returned NULL as output %d.", j);
                break;
            }
        }
    }
    if (rc != 0) {
        if (!pnC_failed())
            pn_set_error(PN_ERR_INVALID_ARGUMENT,
                         "[closure] The function failed without setting an error.");
        for (int j = 0; j < PN_MAX_OUTPUTS && j < (n > 0 ? n : 0); j++) out[j] = NULL;
        pn_scope_pop();
        return -1;
    }
    if (pnT_scope_keep(out, n)) return -1;
    *nout = n;
    return 0;
}

/* ───────────────────────────── scope helpers ───────────────────────────── */

static char seen_marker;

int pnT_scope_keep(pn_array **res, int n)
{
    pnC_scope *scope = pnC_current_scope(); /* the scope about to close */
    int rc = 0;
    for (int i = 0; i < n; i++) {
        pn_array *r = res[i];
        if (!r) continue;
        if (r->owner != scope || r->tag == &seen_marker) {
            pn_array *a = pnC_alias(r);
            if (!a) {
                rc = -1;
                break;
            }
            res[i] = a;
        } else {
            r->tag = &seen_marker;
        }
    }
    for (int i = 0; i < n; i++)
        if (res[i] && res[i]->tag == &seen_marker) res[i]->tag = NULL;
    if (rc) return pnT_scope_fail(res, n);
    pn_scope_pop_keep(res, n);
    return 0;
}

int pnT_scope_fail(pn_array **res, int n)
{
    if (!pnC_failed()) pn_set_error(PN_ERR_BACKEND, "[transform] Failed.");
    for (int i = 0; i < n; i++) res[i] = NULL;
    pn_scope_pop();
    return -1;
}
