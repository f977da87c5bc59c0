/* allocator.c — the CPU caching allocator behind every buffer: size classes (four per power
 * of two), free lists per class, active/peak/cache statistics, memory and cache limits. A
 * failed allocation empties the cache and retries before it reports out of memory. */
#include "core.h"
#ifdef PONTE_HAS_GPU
#include "backend/cuda/gpu.h"
#endif

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define ALIGN 64
#define NUM_CLASSES 256
/* Blocks above this size are not cached (returned to the system at once). */
#define MAX_CACHED ((size_t)1 << 36)

typedef struct free_block {
    struct free_block *next;
} free_block;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static free_block *free_lists[NUM_CLASSES];
static size_t active_bytes, peak_bytes, cache_bytes;
static size_t memory_limit; /* 0: none */
static bool memory_limit_set; /* false: memory_limit still holds MLX's default, set on first use */
static size_t default_limit;  /* that default: reported, not enforced (memory_limit_enforced) */
static size_t cache_limit = (size_t)-1;

/* Class index and capacity for a request: 64 bytes minimum, then 4 steps per power of two
 * (at most 25% waste). */
static int size_class(size_t n, size_t *capacity)
{
    if (n <= ALIGN) {
        *capacity = ALIGN;
        return 0;
    }
    int p = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^p < n <= 2^(p+1) */
    size_t base = (size_t)1 << p, step = base / 4;
    size_t k = (n - base + step - 1) / step; /* 1..4 */
    size_t cap = base + k * step;
    if (cap % ALIGN) cap += ALIGN - cap % ALIGN;
    *capacity = cap;
    int cls = (p - 6) * 4 + (int)k;
    return cls < NUM_CLASSES ? cls : NUM_CLASSES - 1;
}

/* The capacity of blocks in class c (the inverse of size_class). */
static size_t class_capacity(int c)
{
    if (c == 0) return ALIGN;
    int p = (c - 1) / 4 + 6, k = (c - 1) % 4 + 1;
    size_t base = (size_t)1 << p, cap = base + (size_t)k * (base / 4);
    return cap % ALIGN ? cap + ALIGN - cap % ALIGN : cap;
}

/* Frees cached blocks, largest classes first, until at most keep bytes stay cached. */
static void release_cache_locked(size_t keep)
{
    for (int c = NUM_CLASSES - 1; c >= 0 && cache_bytes > keep; c--) {
        while (free_lists[c] && cache_bytes > keep) {
            free_block *b = free_lists[c];
            free_lists[c] = b->next;
            cache_bytes -= class_capacity(c);
            free(b);
        }
    }
}

/* MLX's default memory limit on the CPU: 0.8 of the physical memory (none where the system
 * does not say). Called with the lock held. */
static void default_memory_limit_locked(void)
{
    if (memory_limit_set) return;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    memory_limit = pages > 0 && page > 0 ? (size_t)(0.8 * (double)pages * (double)page) : 0;
    default_limit = memory_limit;
    memory_limit_set = true;
}

/* Whether allocations are held to memory_limit: a limit the program set, not the default,
 * which MLX's CPU allocator reports but never enforces (a single array of more than the default
 * is the system's to refuse). Called with the lock held. */
static bool memory_limit_enforced(void)
{
    default_memory_limit_locked();
    return memory_limit && memory_limit != default_limit;
}

void *pnC_alloc_bytes(size_t nbytes, size_t *capacity)
{
    size_t cap;
    int cls = size_class(nbytes, &cap);
    bool cacheable = cap <= MAX_CACHED && cls < NUM_CLASSES - 1;
    pthread_mutex_lock(&lock);
    if (cacheable && free_lists[cls]) {
        free_block *b = free_lists[cls];
        free_lists[cls] = b->next;
        cache_bytes -= cap;
        active_bytes += cap;
        if (active_bytes > peak_bytes) peak_bytes = active_bytes;
        pthread_mutex_unlock(&lock);
        *capacity = cap;
        return b;
    }
    if (memory_limit_enforced() && active_bytes + cap > memory_limit) {
        release_cache_locked(0);
        if (active_bytes + cap > memory_limit) {
            size_t active = active_bytes;
            pthread_mutex_unlock(&lock);
            pnC_fail(PN_ERR_OUT_OF_MEMORY,
                     "[malloc] Attempting to allocate %zu bytes which is greater than the memory "
                     "limit of %zu bytes (%zu bytes in use).",
                     nbytes, memory_limit, active);
            return NULL;
        }
    }
    pthread_mutex_unlock(&lock);
    void *p = aligned_alloc(ALIGN, cap);
    if (!p) { /* give the cache back to the system and try once more */
        pthread_mutex_lock(&lock);
        release_cache_locked(0);
        pthread_mutex_unlock(&lock);
        p = aligned_alloc(ALIGN, cap);
        if (!p) {
            pnC_fail(PN_ERR_OUT_OF_MEMORY, "[malloc] Unable to allocate %zu bytes.", nbytes);
            return NULL;
        }
    }
    pthread_mutex_lock(&lock);
    active_bytes += cap;
    if (active_bytes > peak_bytes) peak_bytes = active_bytes;
    pthread_mutex_unlock(&lock);
    *capacity = cap;
    return p;
}

void pnC_free_bytes(void *p, size_t capacity)
{
    if (!p) return;
    size_t cap;
    int cls = size_class(capacity, &cap);
    pthread_mutex_lock(&lock);
    active_bytes -= capacity;
    if (cap == capacity && capacity <= MAX_CACHED && cls < NUM_CLASSES - 1 &&
        cache_bytes + capacity <= cache_limit) {
        free_block *b = p;
        b->next = free_lists[cls];
        free_lists[cls] = b;
        cache_bytes += capacity;
        pthread_mutex_unlock(&lock);
        return;
    }
    pthread_mutex_unlock(&lock);
    free(p);
}

size_t pn_get_active_memory(void)
{
    pthread_mutex_lock(&lock);
    size_t v = active_bytes;
    pthread_mutex_unlock(&lock);
    #ifdef PONTE_HAS_GPU
    v += pnG_active_memory();
#endif
    return v;
}

size_t pn_get_peak_memory(void)
{
    pthread_mutex_lock(&lock);
    size_t v = peak_bytes;
    pthread_mutex_unlock(&lock);
#ifdef PONTE_HAS_GPU
    /* host and device peaks are kept apart: after a reset, an allocation on one side raises
     * only that side's, so the sum is at least what is active on both (0 until then, as MLX) */
    v += pnG_peak_memory();
    size_t active = v ? pn_get_active_memory() : 0;
    if (active > v) v = active;
#endif
    return v;
}

void pn_reset_peak_memory(void)
{
    pthread_mutex_lock(&lock);
    peak_bytes = 0; /* as MLX: the next allocation makes it the bytes in use again */
    pthread_mutex_unlock(&lock);
#ifdef PONTE_HAS_GPU
    pnG_reset_peak_memory();
#endif
}

size_t pn_get_cache_memory(void)
{
    pthread_mutex_lock(&lock);
    size_t v = cache_bytes;
    pthread_mutex_unlock(&lock);
    #ifdef PONTE_HAS_GPU
    v += pnG_cache_memory();
#endif
    return v;
}

size_t pn_get_memory_limit(void)
{
    pthread_mutex_lock(&lock);
    default_memory_limit_locked();
    size_t v = memory_limit;
    pthread_mutex_unlock(&lock);
    return v;
}

size_t pn_set_memory_limit(size_t limit)
{
    pthread_mutex_lock(&lock);
    default_memory_limit_locked();
    size_t old = memory_limit;
    memory_limit = limit;
    pthread_mutex_unlock(&lock);
#ifdef PONTE_HAS_GPU
    pnG_set_memory_limit(limit);
#endif
    return old;
}

size_t pn_set_cache_limit(size_t limit)
{
    pthread_mutex_lock(&lock);
    size_t old = cache_limit;
    cache_limit = limit;
    release_cache_locked(limit);
    pthread_mutex_unlock(&lock);
#ifdef PONTE_HAS_GPU
    pnG_set_cache_limit(limit);
#endif
    return old;
}

int pn_get_device_memory(pn_device d, size_t *active, size_t *peak, size_t *cache)
{
    size_t a = 0, p = 0, c = 0;
    if (!pn_is_available(d))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[memory] Device %s:%d is not available.",
                            d.type == PN_GPU ? "gpu" : "cpu", d.index);
    if (d.type == PN_CPU) {
        pthread_mutex_lock(&lock);
        a = active_bytes, p = peak_bytes, c = cache_bytes;
        pthread_mutex_unlock(&lock);
    }
#ifdef PONTE_HAS_GPU
    else if (pnG_device_memory(d.index, &a, &p, &c))
        return -1;
#endif
    if (active) *active = a;
    if (peak) *peak = p;
    if (cache) *cache = c;
    return 0;
}

void pn_clear_cache(void)
{
    pthread_mutex_lock(&lock);
    release_cache_locked(0);
    pthread_mutex_unlock(&lock);
#ifdef PONTE_HAS_GPU
    pnG_clear_cache();
#endif
}

/* ───────────────────────────── buffers ───────────────────────────── */

_Thread_local bool pnC_eval_gpu;
_Thread_local int pnC_eval_stream;
_Thread_local bool pnC_eval_capturing;

static pnC_buffer *buffer_shell(size_t nbytes)
{
    pnC_buffer *b = malloc(sizeof *b);
    if (!b) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[malloc] Unable to allocate a buffer.");
    atomic_init(&b->refs, 1);
    b->nbytes = nbytes;
    b->data = NULL;
    b->capacity = 0;
    b->device = NULL;
    b->stream = -1;
    b->host_valid = 0;
    b->device_valid = 0;
    return b;
}

pnC_buffer *pnC_buffer_new(size_t nbytes)
{
    pnC_buffer *b = buffer_shell(nbytes);
    if (!b) return NULL;
    b->data = pnC_alloc_bytes(nbytes, &b->capacity);
    if (!b->data) {
        free(b);
        return NULL;
    }
    b->host_valid = 1;
    return b;
}

pnC_buffer *pnC_buffer_new_for_eval(size_t nbytes)
{
#ifdef PONTE_HAS_GPU
    if (pnC_eval_gpu) {
        pnC_buffer *b = buffer_shell(nbytes);
        if (!b) return NULL;
        b->device = pnG_malloc(nbytes, pnC_eval_stream);
        if (!b->device) {
            free(b);
            return NULL;
        }
        b->stream = pnC_eval_stream;
        b->device_valid = 1;
        return b;
    }
#endif
    return pnC_buffer_new(nbytes);
}

void pnC_buffer_retain(pnC_buffer *b) { atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed); }

void pnC_buffer_release(pnC_buffer *b)
{
    if (!b) return;
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1) return;
    if (b->data) pnC_free_bytes(b->data, b->capacity);
#ifdef PONTE_HAS_GPU
    if (b->device) pnG_free(b->device, b->nbytes, b->stream);
#endif
    free(b);
}

#ifdef PONTE_HAS_GPU
/* Migrations of one buffer from several threads at once are serialized. */
static pthread_mutex_t migrate_lock = PTHREAD_MUTEX_INITIALIZER;
#endif

#ifdef PONTE_HAS_GPU
/* Makes b's host copy current (migrate_lock held): allocates it and copies the device copy
 * down after its queued work. 0, or -1 with an error. */
static int host_current_locked(pnC_buffer *b)
{
    if (b->host_valid) return 0;
    if (!b->data && !(b->data = pnC_alloc_bytes(b->nbytes, &b->capacity))) return -1;
    if (b->nbytes && b->device_valid && pnG_copy_to_host(b->data, b->device, b->nbytes, b->stream))
        return -1;
    b->host_valid = 1;
    return 0;
}
#endif

int pnC_buffer_to_host(pnC_buffer *b)
{
    if (b->host_valid) return 0;
#ifdef PONTE_HAS_GPU
    pthread_mutex_lock(&migrate_lock);
    int rc = host_current_locked(b);
    pthread_mutex_unlock(&migrate_lock);
    return rc;
#else
    return pn_set_error(PN_ERR_BACKEND, "[eval] A buffer has no host copy.");
#endif
}

#ifdef PONTE_HAS_GPU
/* b's device copy is on another GPU than stream's: moves it to stream's GPU (its bytes copied
 * across when they are current, after the old GPU's queued work on them: straight where the
 * GPUs have peer access, else through the host copy), freeing the old one. A buffer has one
 * device copy; using it on GPUs in turn moves it each time. */
static int move_to_gpu_of(pnC_buffer *b, int stream)
{
    if (b->device_valid && b->nbytes &&
        !pnG_peer_copy(pnG_stream_device(stream), pnG_stream_device(b->stream))) {
        if (host_current_locked(b)) return -1;
        b->device_valid = 0; /* the new GPU's copy comes from the host */
    }
    void *p = pnG_malloc(b->nbytes, stream);
    if (!p) return -1;
    int rc = 0;
    if (b->device_valid && b->nbytes) {
        rc = pnG_stream_wait(stream, b->stream);
        if (rc == 0) rc = pnG_copy_device(p, b->device, b->nbytes, stream);
        if (rc == 0) rc = pnG_stream_wait(b->stream, stream); /* freed once read */
    }
    if (rc) {
        pnG_free(p, b->nbytes, stream);
        return -1;
    }
    pnG_free(b->device, b->nbytes, b->stream);
    b->device = p;
    b->stream = stream;
    return 0;
}
#endif

int pnC_buffer_to_device(pnC_buffer *b, int stream)
{
#ifdef PONTE_HAS_GPU
    if (b->device_valid && b->stream == stream) return 0; /* the common case: no lock */
    pthread_mutex_lock(&migrate_lock);
    int rc = 0;
    if (b->device && pnG_stream_device(b->stream) != pnG_stream_device(stream))
        rc = move_to_gpu_of(b, stream);
    if (rc == 0 && !b->device) {
        b->device = pnG_malloc(b->nbytes, stream);
        if (!b->device) rc = -1;
        b->stream = stream;
    }
    if (rc == 0 && !b->device_valid) {
        if (b->nbytes) rc = pnG_copy_to_device(b->device, b->data, b->nbytes, b->stream);
        if (rc == 0) b->device_valid = 1;
    }
    if (rc == 0 && b->stream != stream) { /* order after the stream that used it last */
        rc = pnG_stream_wait(stream, b->stream);
        if (rc == 0) b->stream = stream;
    }
    pthread_mutex_unlock(&migrate_lock);
    return rc;
#else
    return pn_set_error(PN_ERR_BACKEND, "[eval] Ponte was built without the CUDA backend.");
#endif
}
