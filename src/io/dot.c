/* dot.c — mlx.core.export_to_dot: the pending graph behind some arrays as Graphviz DOT text,
 * in MLX's layout (sources, one rectangle per primitive node, sinks, arrays named A, B, ...).
 * The walk is iterative (a long chain must not overflow the stack). */
#include "core/core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Into the core's pointer map (names index, or 1 for "visited"). */
static int map_put(pnC_ptrmap *m, const void *key, int64_t val)
{
    return pnC_ptrmap_put(m, key, val, "export_to_dot");
}

/* Names: user names by array, then generated letters in order of first use. */
typedef struct {
    pnC_ptrmap ids;          /* array -> index into given names, or -(count) for letters */
    const char *const *given;
    int count;               /* names handed out so far (given ones included) */
} namer;

/* The n-th generated name (1-based): A..Z, AA, AB, ... */
static void letters(int n, char *out)
{
    char tmp[16];
    int k = 0;
    for (; n > 0 && k < 15; n = (n - 1) / 26) tmp[k++] = (char)('A' + (n - 1) % 26);
    for (int i = 0; i < k; i++) out[i] = tmp[k - 1 - i];
    out[k] = 0;
}

/* The name of key (an array): a given one, or a generated one written into buf (key NULL: a
 * fresh generated name). NULL on allocation failure. */
static const char *name_of(namer *nm, const void *key, char *buf)
{
    int64_t *v = key ? pnC_ptrmap_find(&nm->ids, key) : NULL;
    if (!v) {
        int id = -(++nm->count);
        if (key && map_put(&nm->ids, key, id)) return NULL;
        letters(-id, buf);
        return buf;
    }
    if (*v >= 0) return nm->given[*v];
    letters((int)-*v, buf);
    return buf;
}

/* a without the Alias nodes over it: the handles transformations give their results (a
 * compiled function's, a closure's) are drawn as the arrays they stand for, as MLX, which has
 * no such nodes, draws them. */
static pn_array *unaliased(pn_array *a)
{
    while (a && a->node && a->node->prim == &pnC_alias_prim) a = a->node->inputs[0];
    return a;
}

typedef struct {
    pn_array *a;
    int next; /* next input of a's node to visit */
} frame;

typedef struct {
    FILE *f;
    bool emit;               /* false: only record the consumed arrays */
    namer nm;
    pnC_ptrmap sinks, consumed; /* output arrays; arrays some node of the graph consumes */
} dot_walk;

/* One depth-first walk over the graph behind the outputs, inputs before their node. The first
 * walk records which arrays are consumed (an output that is also an input is no sink, as MLX
 * draws it); the second writes the lines. */
static int walk(dot_walk *w, pn_array *const *outputs, int n)
{
    pnC_ptrmap seen = {0}; /* visited nodes (and leaves) */
    frame *stack = malloc(64 * sizeof *stack);
    size_t cap = 64, top = 0;
    int rc = stack ? 0 : pn_set_error(PN_ERR_OUT_OF_MEMORY, "[export_to_dot] Out of memory.");
    char b1[16], b2[16];
    for (int o = 0; o < n && rc == 0; o++) {
        top = 0;
        stack[top++] = (frame){unaliased(outputs[o]), 0};
        while (top > 0 && rc == 0) {
            frame *fr = &stack[top - 1];
            pn_array *a = fr->a;
            pnC_node *nd = a->node;
            const void *key = nd ? (const void *)nd : (const void *)a;
            if (fr->next == 0 && pnC_ptrmap_find(&seen, key)) { /* met before on another path */
                top--;
                continue;
            }
            if (!nd) { /* no pending computation: a source */
                const char *s = w->emit ? name_of(&w->nm, a, b1) : "";
                if (!s || map_put(&seen, key, 1)) rc = -1;
                else if (w->emit) fprintf(w->f, "{ rank=source; \"%s\"; }\n", s);
                top--;
                continue;
            }
            if (fr->next < nd->nin) { /* visit the next input first */
                pn_array *in = unaliased(nd->inputs[fr->next++]);
                if (pnC_ptrmap_find(&seen, in->node ? (const void *)in->node : (const void *)in)) continue;
                if (top == cap) {
                    frame *st = realloc(stack, 2 * cap * sizeof *stack);
                    if (!st) {
                        rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[export_to_dot] Out of memory.");
                        break;
                    }
                    stack = st, cap *= 2;
                }
                stack[top++] = (frame){in, 0};
                continue;
            }
            /* all inputs done: the node, its input edges, its outputs */
            top--;
            if ((rc = map_put(&seen, key, 1))) break;
            if (!w->emit) {
                for (int i = 0; i < nd->nin && rc == 0; i++)
                    rc = map_put(&w->consumed, unaliased(nd->inputs[i]), 1);
                continue;
            }
            uintptr_t id = (uintptr_t)nd;
            char label[256];
            if (nd->prim->label) nd->prim->label(nd, label, sizeof label);
            fprintf(w->f, "{ %" PRIuPTR " [label =\"%s\", shape=rectangle]; }\n", id,
                    nd->prim->label ? label : nd->prim->name);
            for (int i = 0; i < nd->nin && rc == 0; i++) {
                const char *s = name_of(&w->nm, unaliased(nd->inputs[i]), b1);
                if (!s) rc = -1;
                else fprintf(w->f, "\"%s\" -> %" PRIuPTR "\n", s, id);
            }
            for (int j = 0; j < nd->nout && rc == 0; j++) {
                pn_array *out = nd->outputs[j]; /* NULL when that output is gone: a fresh name */
                const char *s = name_of(&w->nm, out, b2);
                if (!s) {
                    rc = -1;
                    break;
                }
                bool sink = out && pnC_ptrmap_find(&w->sinks, out) && !pnC_ptrmap_find(&w->consumed, out);
                fprintf(w->f, "{ %s\"%s\"; }\n", sink ? "rank=sink; " : "", s);
                fprintf(w->f, "%" PRIuPTR " -> \"%s\"\n", id, s);
            }
        }
    }
    free(stack);
    pnC_ptrmap_free(&seen);
    return rc;
}

int pn_export_to_dot(FILE *f, pn_array *const *outputs, int n, pn_array *const *named,
                     const char *const *names, int nnamed)
{
    if (!f || n < 0 || nnamed < 0 || (nnamed && (!named || !names)))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[export_to_dot] Bad arguments.");
    if (!pnC_inputs_ok("export_to_dot", n, outputs) || !pnC_inputs_ok("export_to_dot", nnamed, named))
        return -1;
    for (int i = 0; i < nnamed; i++)
        if (!names[i] || !*names[i] || strchr(names[i], '"'))
            return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[export_to_dot] Array names must be "
                                "non-empty and hold no '\"'.");
    dot_walk w = {.f = f, .nm = {.given = names}};
    int rc = 0;
    for (int i = 0; i < nnamed && rc == 0; i++) /* a name given to an alias names its array */
        if (!pnC_ptrmap_find(&w.nm.ids, unaliased(named[i])))
            rc = map_put(&w.nm.ids, unaliased(named[i]), i), w.nm.count++;
    for (int i = 0; i < n && rc == 0; i++) rc = map_put(&w.sinks, unaliased(outputs[i]), 1);
    if (rc == 0) rc = walk(&w, outputs, n);
    if (rc == 0) {
        w.emit = true;
        fprintf(f, "digraph {\n");
        rc = walk(&w, outputs, n);
    }
    if (rc == 0) fprintf(f, "}");
    pnC_ptrmap_free(&w.sinks), pnC_ptrmap_free(&w.consumed), pnC_ptrmap_free(&w.nm.ids);
    if (rc == 0 && (fflush(f) || ferror(f)))
        rc = pn_set_error(PN_ERR_IO, "[export_to_dot] Writing the graph failed.");
    return rc;
}
