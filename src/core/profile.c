/* profile.c — a per-primitive time profile of evaluation, for finding where a training step
 * goes: with PONTE_PROFILE=1 in the environment every kernel call is timed (host wall time:
 * a GPU kernel's launch, not its run) and counted by (primitive, first params word — the op
 * code of the elementwise, reduce and scan families —, dtype, output shape); the table goes to
 * stderr at exit, largest total first. Off (one relaxed load per kernel) otherwise. */
#include "core.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROFILE_SLOTS 1024 /* distinct keys kept; later ones are counted as "(other)" */

typedef struct {
    uint64_t key;
    const char *prim;
    int op;
    pn_dtype dtype;
    char shape[48];
    int64_t calls;
    double seconds;
} profile_entry;

static profile_entry table[PROFILE_SLOTS];
static int nentries;
static double other_seconds;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int state = -1; /* -1 unread, 0 off, 1 on */

static int by_total(const void *a, const void *b)
{
    double x = ((const profile_entry *)a)->seconds, y = ((const profile_entry *)b)->seconds;
    return (x < y) - (x > y);
}

static void report(void)
{
    pthread_mutex_lock(&lock);
    qsort(table, (size_t)nentries, sizeof table[0], by_total);
    double total = other_seconds;
    for (int i = 0; i < nentries; i++) total += table[i].seconds;
    fprintf(stderr, "ponte profile: %.3f s in kernels (PONTE_PROFILE)\n%10s %6s %8s %10s  %s\n",
            total, "total ms", "share", "calls", "ms/call", "primitive[op] dtype shape");
    for (int i = 0; i < nentries && i < 60; i++) {
        const profile_entry *e = &table[i];
        fprintf(stderr, "%10.2f %5.1f%% %8lld %10.4f  %s[%d] %s %s\n", e->seconds * 1e3,
                total > 0 ? 100 * e->seconds / total : 0.0, (long long)e->calls,
                e->seconds * 1e3 / (double)e->calls, e->prim, e->op, pn_dtype_name(e->dtype), e->shape);
    }
    pthread_mutex_unlock(&lock);
}

bool pnC_profile_on(void)
{
    int s = atomic_load_explicit(&state, memory_order_relaxed);
    if (s < 0) {
        const char *env = getenv("PONTE_PROFILE");
        s = env && *env && strcmp(env, "0") != 0;
        int expected = -1;
        if (atomic_compare_exchange_strong(&state, &expected, s) && s) atexit(report);
    }
    return s == 1;
}

double pnC_profile_clock(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void pnC_profile_add(const pnC_node *nd, const pn_array *out0, double seconds)
{
    int op = nd->params_size >= sizeof(int) ? *(const int *)nd->params : -1;
    pn_dtype dt = out0->dtype;
    char shape[48];
    pnC_shape_str(out0->shape, out0->ndim, shape, sizeof shape);
    uint64_t key = pnC_fnv1a(&nd->prim, sizeof nd->prim, PNC_FNV_OFFSET);
    key = pnC_fnv1a(&op, sizeof op, key);
    key = pnC_fnv1a(&dt, sizeof dt, key);
    key = pnC_fnv1a(shape, strlen(shape), key);
    pthread_mutex_lock(&lock);
    int i = 0;
    while (i < nentries && table[i].key != key) i++;
    if (i == nentries && nentries < PROFILE_SLOTS) {
        profile_entry *e = &table[nentries++];
        *e = (profile_entry){.key = key, .prim = nd->prim->name, .op = op, .dtype = dt};
        memcpy(e->shape, shape, sizeof shape);
    }
    if (i < nentries) table[i].calls++, table[i].seconds += seconds;
    else other_seconds += seconds;
    pthread_mutex_unlock(&lock);
}
