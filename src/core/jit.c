/* jit.c — what kernels generated at run time share: the disk cache of their compiled forms
 * ($PONTE_CACHE_DIR/kernels), building a source with a host compiler into a shared object
 * that is loaded into the process, the table from a program's signature to its kernel and the
 * record of the first failure (the CPU's fused programs, backend/cpu/fused_jit.c; the GPU's,
 * backend/cuda/fused.cu; the simulated GPU's builds, backend/cuda/custom_kernel.cu). */
#include "core/core.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ───────────────────────────── the disk cache ───────────────────────────── */

bool pnC_kcache_path(const char *text, const char *tag, uint64_t salt, char *path, size_t cap)
{
    const char *off = getenv("PONTE_KERNEL_CACHE");
    if (off && !strcmp(off, "0")) return false;
    char dir[1024];
    const char *base = getenv("PONTE_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n = base && *base ? snprintf(dir, sizeof dir, "%s", base)
            : xdg && *xdg ? snprintf(dir, sizeof dir, "%s/ponte", xdg)
            : home && *home ? snprintf(dir, sizeof dir, "%s/.cache/ponte", home) : -1;
    if (n < 0 || (size_t)n + 16 >= sizeof dir) return false;
    for (char *c = dir + 1; *c; c++) /* mkdir -p */
        if (*c == '/') {
            *c = 0;
            mkdir(dir, 0700);
            *c = '/';
        }
    mkdir(dir, 0700);
    strcat(dir, "/kernels");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return false;
    uint64_t h = pnC_fnv1a(text, strlen(text), pnC_fnv1a(tag, strlen(tag) + 1, salt));
    n = snprintf(path, cap, "%s/%016llx-%zu.%s", dir, (unsigned long long)h, strlen(text), tag);
    return n > 0 && (size_t)n < cap;
}

/* A cache file is the kernel's bytes and this trailer, checked before anything is loaded
 * from it (a truncated shared object can crash the loader). */
struct cache_trailer {
    char magic[8]; /* "PNKCACH1" */
    uint64_t len, hash;
};

char *pnC_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    char *data = NULL;
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0 && st.st_size < ((off_t)1 << 28) &&
        (data = malloc((size_t)st.st_size)) && fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        free(data);
        data = NULL;
    }
    *len = data ? (size_t)st.st_size : 0;
    fclose(f);
    return data;
}

char *pnC_kcache_read(const char *path, size_t *len)
{
    size_t n = 0;
    char *data = pnC_read_file(path, &n);
    struct cache_trailer t;
    bool ok = data && n > sizeof t;
    if (ok) {
        n -= sizeof t;
        memcpy(&t, data + n, sizeof t);
        ok = !memcmp(t.magic, "PNKCACH1", 8) && t.len == n && t.hash == pnC_fnv1a(data, n, PNC_FNV_OFFSET);
    }
    if (!ok) {
        free(data);
        return NULL;
    }
    *len = n;
    return data;
}

void pnC_kcache_write(const char *path, const void *data, size_t len)
{
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    struct cache_trailer t = {{'P', 'N', 'K', 'C', 'A', 'C', 'H', '1'}, len, pnC_fnv1a(data, len, PNC_FNV_OFFSET)};
    bool ok = fwrite(data, 1, len, f) == len && fwrite(&t, 1, sizeof t, f) == sizeof t;
    if (fclose(f) != 0) ok = false;
    if (!ok || rename(tmp, path) != 0) remove(tmp);
}

/* ───────────────────────────── host builds ───────────────────────────── */

static const char *tmp_dir(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

/* symbol of the shared object at path, loaded privately; NULL with why (dlerror's text). */
static void *load_symbol(const char *path, const char *symbol, const char **why)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    void *fn = h ? dlsym(h, symbol) : NULL;
    *why = !h ? dlerror() : !fn ? "the symbol is missing" : NULL;
    if (h && !fn) dlclose(h);
    return fn;
}

/* load_symbol of a shared object held in memory (a checked cache file's bytes), through a
 * temporary file of a name of its own: the loader takes an object whose name it has loaded
 * before for that object, so names are never reused. */
static void *load_bytes(const char *bytes, size_t len, const char *symbol)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/ponte-kernel-XXXXXX", tmp_dir());
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    void *fn = NULL;
    const char *why = NULL;
    bool ok = write(fd, bytes, len) == (ssize_t)len;
    if (close(fd) == 0 && ok) fn = load_symbol(path, symbol, &why);
    remove(path); /* a loaded object stays mapped */
    return fn;
}

/* Seconds a compiler may run: PONTE_JIT_TIMEOUT, else 120. */
static double compiler_timeout(void)
{
    const char *e = getenv("PONTE_JIT_TIMEOUT");
    double t = e && *e ? strtod(e, NULL) : 0;
    return t > 0 ? t : 120;
}

/* Runs argv (argv[0] looked up in PATH) with stdout and stderr into log; its exit status, -1
 * when it could not start or did not exit, -2 when it ran past the timeout (then killed). */
static int run_compiler(char *const *argv, const char *log)
{
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0) return -1;
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return -1;
    const double limit = compiler_timeout();
    struct timespec start, now, nap = {0, 2000000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) return -1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - start.tv_sec) + 1e-9 * (double)(now.tv_nsec - start.tv_nsec) > limit) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
            return -2;
        }
        nanosleep(&nap, NULL);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void *pnC_host_build(const char *who, const char *compiler, const char *const *flags, const char *const *libs,
                     const char *ext, const char *source, const char *symbol)
{
    /* the cache keys on the compiler and its flags besides the source */
    uint64_t salt = pnC_fnv1a(compiler, strlen(compiler) + 1, PNC_FNV_OFFSET);
    int nflags = 0;
    for (; flags[nflags]; nflags++) salt = pnC_fnv1a(flags[nflags], strlen(flags[nflags]) + 1, salt);
    int nlibs = 0;
    for (; libs && libs[nlibs]; nlibs++) salt = pnC_fnv1a(libs[nlibs], strlen(libs[nlibs]) + 1, salt);
    char tag[32], cached[1100];
    snprintf(tag, sizeof tag, "%s.so", ext);
    bool cache = pnC_kcache_path(source, tag, salt, cached, sizeof cached);
    size_t len = 0;
    char *bytes = cache ? pnC_kcache_read(cached, &len) : NULL;
    void *fn = bytes ? load_bytes(bytes, len, symbol) : NULL;
    free(bytes);
    if (fn) return fn;

    char dir[1024], src[1100], so[1100], log[1100];
    snprintf(dir, sizeof dir, "%s/ponte-jit-XXXXXX", tmp_dir());
    if (!mkdtemp(dir))
        return pnC_fail(PN_ERR_IO, "[%s] Cannot make a directory under %s for a generated kernel.", who, tmp_dir());
    snprintf(src, sizeof src, "%s/kernel.%s", dir, ext);
    snprintf(so, sizeof so, "%s/kernel.so", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    FILE *f = fopen(src, "w");
    bool written = f && fputs(source, f) >= 0;
    if (f && fclose(f) != 0) written = false;
    if (!written) {
        pnC_fail(PN_ERR_IO, "[%s] Cannot write %s.", who, src);
    } else {
        const char *argv[64];
        int n = 0;
        argv[n++] = compiler;
        for (int i = 0; i < nflags && n < 40; i++) argv[n++] = flags[i];
        argv[n++] = "-shared", argv[n++] = "-fPIC", argv[n++] = src, argv[n++] = "-o", argv[n++] = so;
        for (int i = 0; i < nlibs && n < 63; i++) argv[n++] = libs[i];
        argv[n] = NULL;
        int rc = run_compiler((char *const *)argv, log);
        const char *why = NULL;
        if (rc == 0) fn = load_symbol(so, symbol, &why);
        if (fn && cache && (bytes = pnC_read_file(so, &len))) {
            pnC_kcache_write(cached, bytes, len);
            free(bytes);
        }
        if (!fn) {
            char msg[4096] = "";
            FILE *l = fopen(log, "r");
            size_t got = l ? fread(msg, 1, sizeof msg - 1, l) : 0;
            msg[got] = 0;
            if (l) fclose(l);
            if (rc == -2)
                pnC_fail(PN_ERR_BACKEND, "[%s] %s did not build a generated kernel within %g s (PONTE_JIT_TIMEOUT).\n%s",
                         who, compiler, compiler_timeout(), msg);
            else
                pnC_fail(PN_ERR_BACKEND, "[%s] Could not build a generated kernel with %s (%s%d) %s\n%s", who,
                         compiler, rc < 0 ? "it did not run: " : "exit ", rc, rc == 0 && why ? why : "", msg);
        }
    }
    remove(src), remove(so), remove(log), remove(dir); /* a loaded object stays mapped */
    return fn;
}

/* ───────────────────────────── kernels by signature ───────────────────────────── */

struct pnC_kernel_slot {
    uint64_t hash;
    size_t len;
    void *key; /* len bytes, owned */
    void *value; /* NULL: the slot is free */
};

/* The slot holding key, else the free slot where it would go (cap > 0). */
static struct pnC_kernel_slot *kernel_slot(struct pnC_kernel_slot *slots, size_t cap, uint64_t h,
                                           const void *key, size_t len)
{
    for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1)) {
        struct pnC_kernel_slot *s = &slots[i];
        if (!s->value || (s->hash == h && s->len == len && !memcmp(s->key, key, len))) return s;
    }
}

void *pnC_kernel_table_get(const pnC_kernel_table *t, const void *key, size_t len)
{
    if (!t->cap) return NULL;
    return kernel_slot(t->slots, t->cap, pnC_fnv1a(key, len, PNC_FNV_OFFSET), key, len)->value;
}

int pnC_kernel_table_put(pnC_kernel_table *t, const void *key, size_t len, void *value, const char *who)
{
    const uint64_t h = pnC_fnv1a(key, len, PNC_FNV_OFFSET);
    struct pnC_kernel_slot *s = t->cap ? kernel_slot(t->slots, t->cap, h, key, len) : NULL;
    if (s && s->value) {
        s->value = value;
        return 0;
    }
    void *copy = malloc(len ? len : 1);
    if (!copy) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", who);
    memcpy(copy, key, len);
    if (2 * (t->n + 1) > t->cap) { /* grow: rehash into twice the slots */
        size_t cap = t->cap ? 2 * t->cap : 64;
        struct pnC_kernel_slot *grown = calloc(cap, sizeof *grown);
        if (!grown) {
            free(copy);
            return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[%s] Out of memory.", who);
        }
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->slots[i].value) continue;
            size_t j = t->slots[i].hash & (cap - 1);
            while (grown[j].value) j = (j + 1) & (cap - 1);
            grown[j] = t->slots[i];
        }
        free(t->slots);
        t->slots = grown, t->cap = cap;
    }
    s = kernel_slot(t->slots, t->cap, h, key, len);
    *s = (struct pnC_kernel_slot){.hash = h, .len = len, .key = copy, .value = value};
    t->n++;
    return 0;
}

void pnC_kernel_table_free(pnC_kernel_table *t)
{
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].value) free(t->slots[i].key);
    free(t->slots);
    *t = (pnC_kernel_table){0};
}

/* ───────────────────────────── the first failure ───────────────────────────── */

void pnC_jit_fail(pnC_jit_status *s)
{
    int none = 0;
    if (__atomic_compare_exchange_n(&s->failed, &none, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        const char *msg = pn_last_error_message();
        snprintf(s->why, sizeof s->why, "%s", msg && *msg ? msg : "unknown error");
        __atomic_store_n(&s->failed, 2, __ATOMIC_RELEASE); /* why is written */
    }
    pn_clear_error();
}

bool pnC_jit_failed(const pnC_jit_status *s) { return __atomic_load_n(&s->failed, __ATOMIC_ACQUIRE) != 0; }

const char *pnC_jit_reason(const pnC_jit_status *s)
{
    int f = __atomic_load_n(&s->failed, __ATOMIC_ACQUIRE);
    return f == 2 ? s->why : f ? "a generated kernel failed (its reason is being recorded)" : NULL;
}
