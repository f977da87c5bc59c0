/* params.c — parameter trees: an ordered map from dotted names to arrays (the flattened form
 * of MLX's nested dicts), used for model parameters, gradients and optimizer state. */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

struct pn_params {
    char **names;
    pn_array **arrays;
    int n, cap;
};

pn_params *pn_params_new(void)
{
    pn_params *p = calloc(1, sizeof *p);
    if (!p) pnC_fail(PN_ERR_OUT_OF_MEMORY, "[params] Out of memory.");
    return p;
}

void pn_params_free(pn_params *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++) {
        free(p->names[i]);
        pnC_decref(p->arrays[i]);
    }
    free(p->names);
    free(p->arrays);
    free(p);
}

static int find(const pn_params *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->names[i], name) == 0) return i;
    return -1;
}

int pn_params_set(pn_params *p, const char *name, pn_array *a)
{
    if (!p || !name) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[params] NULL map or name.");
    if (!pnC_inputs_ok("params", 1, &a)) return -1;
    int i = find(p, name);
    if (i >= 0) {
        pnC_incref(a);
        pnC_decref(p->arrays[i]);
        p->arrays[i] = a;
        return 0;
    }
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        char **names = realloc(p->names, (size_t)cap * sizeof *names);
        if (names) p->names = names;
        pn_array **arrays = names ? realloc(p->arrays, (size_t)cap * sizeof *arrays) : NULL;
        if (!arrays) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[params] Out of memory.");
        p->arrays = arrays;
        p->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[params] Out of memory.");
    p->names[p->n] = copy;
    p->arrays[p->n] = pnC_incref(a);
    p->n++;
    return 0;
}

pn_array *pn_params_get(const pn_params *p, const char *name)
{
    if (!p || !name) return NULL;
    int i = find(p, name);
    return i < 0 ? NULL : p->arrays[i];
}

int pn_params_count(const pn_params *p) { return p ? p->n : 0; }
const char *pn_params_name(const pn_params *p, int i) { return p && i >= 0 && i < p->n ? p->names[i] : NULL; }
pn_array *pn_params_at(const pn_params *p, int i) { return p && i >= 0 && i < p->n ? p->arrays[i] : NULL; }

pn_params *pn_params_subtree(const pn_params *p, const char *prefix)
{
    if (!p || !prefix) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[params] NULL map or prefix.");
    pn_params *sub = pn_params_new();
    if (!sub) return NULL;
    size_t k = strlen(prefix);
    for (int i = 0; i < p->n; i++) {
        if (strncmp(p->names[i], prefix, k) == 0 && p->names[i][k] == '.') {
            if (pn_params_set(sub, p->names[i] + k + 1, p->arrays[i])) {
                pn_params_free(sub);
                return NULL;
            }
        }
    }
    return sub;
}

int pn_params_eval(const pn_params *p)
{
    if (!p) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[params] NULL map.");
    return pn_eval(p->arrays, p->n);
}
