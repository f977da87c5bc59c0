/* ptrmap.c — the core's one map from pointers to int64 values (open addressing, linear
 * probing, at most half full), for the graph walks that must remember nodes or arrays they
 * met: autodiff/vmap's node records, export_function's constants, export_to_dot's names; and
 * the FNV-1a byte hash. */
#include "core/core.h"

#include <stdlib.h>

static size_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33, x *= 0xff51afd7ed558ccdULL, x ^= x >> 33;
    return (size_t)x;
}

/* See core.h. */
int64_t *pnC_ptrmap_find(const pnC_ptrmap *m, const void *key)
{
    if (!m->cap || !key) return NULL;
    for (size_t i = ptr_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return NULL;
        if (m->keys[i] == key) return &m->vals[i];
    }
}

/* Rehashes m into a table of cap slots. 0, or -1 when memory runs out (m unchanged). */
static int rehash(pnC_ptrmap *m, size_t cap)
{
    const void **keys = calloc(cap, sizeof *keys);
    int64_t *vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys), free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = ptr_hash(m->keys[i]) & (cap - 1);
        while (keys[j]) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i], vals[j] = m->vals[i];
    }
    free(m->keys), free(m->vals);
    m->keys = keys, m->vals = vals, m->cap = cap;
    return 0;
}

/* See core.h. */
int pnC_ptrmap_put(pnC_ptrmap *m, const void *key, int64_t val, const char *who)
{
    if (2 * (m->n + 1) > m->cap && rehash(m, m->cap ? 2 * m->cap : 64))
        return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", who);
    size_t i = ptr_hash(key) & (m->cap - 1);
    while (m->keys[i] && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
    if (!m->keys[i]) m->n++;
    m->keys[i] = key, m->vals[i] = val;
    return 0;
}

/* See core.h. */
void pnC_ptrmap_free(pnC_ptrmap *m)
{
    free(m->keys), free(m->vals);
    *m = (pnC_ptrmap){0};
}

/* See core.h. */
uint64_t pnC_fnv1a(const void *p, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
    return h;
}
