/* jit.h — what kernels generated at run time share (src/core/jit.c): cache keys, the disk cache
 * of compiled forms, host builds, the table from a program's signature to its kernel, and the
 * record of the first failure. C and C++ alike: core.h includes it, and so do the CUDA
 * backend's files (through gpu.h). */
#ifndef PONTE_CORE_JIT_H
#define PONTE_CORE_JIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* FNV-1a over n bytes at p, continuing from h (PNC_FNV_OFFSET to start): checksums and cache
 * keys (src/core/ptrmap.c). */
#define PNC_FNV_OFFSET 14695981039346656037ull
uint64_t pnC_fnv1a(const void *p, size_t n, uint64_t h);

/* The disk cache keeps generated kernels' compiled forms in $PONTE_CACHE_DIR/kernels (default
 * $XDG_CACHE_HOME/ponte, else ~/.cache/ponte; off with PONTE_KERNEL_CACHE=0), best effort:
 * nothing fails when it cannot be written.
 *   kcache_path: the file for text compiled as tag (target, compiler) with salt folded in,
 *     its directory made; false when the cache is off or has no directory.
 *   kcache_read: its bytes (free()), or NULL when missing, unreadable or damaged (each file
 *     ends in a trailer of length and hash, checked before anything is loaded from it).
 *   kcache_write: stores len bytes as path, whole or not at all.
 *   read_file: a whole file under 256 MiB (free()), or NULL. */
bool pnC_kcache_path(const char *text, const char *tag, uint64_t salt, char *path, size_t cap);
char *pnC_kcache_read(const char *path, size_t *len);
void pnC_kcache_write(const char *path, const void *data, size_t len);
char *pnC_read_file(const char *path, size_t *len);

/* Builds source (a file of extension ext: "c", "cu") with compiler (a path, or a name looked
 * up in PATH), flags and libs (NULL-terminated, before and after the source; -shared -fPIC
 * are added; link libm as "-lm" where the source calls it, or its calls bind to the oldest
 * versions of glibc's functions, whose error results differ) into a shared object, or
 * takes it from the disk cache (keyed on source, compiler and flags), loads it privately and
 * returns its symbol (a compiler running past PONTE_JIT_TIMEOUT seconds, default 120, is
 * killed); NULL with an error naming who and holding the compiler's messages. A
 * loaded object stays for the life of the process. */
void *pnC_host_build(const char *who, const char *compiler, const char *const *flags, const char *const *libs,
                     const char *ext, const char *source, const char *symbol);

/* Generated kernels by program signature: a map from byte strings (copied in) to non-NULL
 * pointers, zero-initialised empty (`pnC_kernel_table t = {0};`), never shrunk, for the life
 * of the process. Not locked: its user serializes every call.
 *   get: key's value, or NULL.
 *   put: sets key's value (inserting or overwriting); 0, or -1 with PN_ERR_OUT_OF_MEMORY
 *     "[who] Out of memory." (the table unchanged).
 *   free: releases the keys and slots (not the values) and empties the table. */
typedef struct pnC_kernel_table {
    struct pnC_kernel_slot *slots;
    size_t cap, n; /* cap: a power of two, at most half full */
} pnC_kernel_table;
void *pnC_kernel_table_get(const pnC_kernel_table *t, const void *key, size_t len);
int pnC_kernel_table_put(pnC_kernel_table *t, const void *key, size_t len, void *value, const char *who);
void pnC_kernel_table_free(pnC_kernel_table *t);

/* Whether a kind of generated kernels failed: after the first failure (no compiler, one that
 * refused a program, no NVRTC) its user falls back to its interpreting kernel for the life of
 * the process, and keeps why. Zero-initialised: nothing failed. Thread-safe.
 *   fail: records the current error's message as the reason (the first call only) and
 *     clears the error.
 *   failed: whether fail was called.
 *   reason: the first failure's message, or NULL while nothing failed. */
typedef struct pnC_jit_status {
    int failed;
    char why[1024];
} pnC_jit_status;
void pnC_jit_fail(pnC_jit_status *s);
bool pnC_jit_failed(const pnC_jit_status *s);
const char *pnC_jit_reason(const pnC_jit_status *s);

#ifdef __cplusplus
}
#endif

#endif
