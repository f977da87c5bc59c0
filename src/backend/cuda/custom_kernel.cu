/* custom_kernel.cu — runtime compilation and launch of user CUDA kernels (mx.fast.cuda_kernel,
 * precompiled_cuda_kernel). NVRTC is loaded with dlopen on first use (libnvrtc.so.<major>,
 * then libnvrtc.so), so the library has no link-time dependency on it; the source is compiled
 * for the current device's sm_XY to a cubin and loaded with the CUDA 12 library API
 * (cudaLibraryLoadData / cudaLibraryGetKernel), which also takes PTX and cubins as they are.
 * Loaded modules are cached by key for the life of the process (as MLX's JIT cache). The same
 * path compiles the kernels Ponte generates itself (mx.compile's fused groups, fused.cu): those
 * include Ponte's headers, which NVRTC reads from the library's embedded copies
 * (rtc_headers.h). The simulated runtime cannot load device code: there every launch is a
 * clear error, but NVRTC still compiles (the tests check generated sources with it). */
#include "backend/cuda/common.cuh"
#include "backend/cuda/custom_kernel.h"
#include "backend/cuda/rtc_headers.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The NVRTC entry points used, by their documented C signatures (nvrtc.h is not needed). */
typedef struct _nvrtcProgram *nvrtcProgram;
static struct {
    int (*create)(nvrtcProgram *, const char *, const char *, int, const char *const *, const char *const *);
    int (*compile)(nvrtcProgram, int, const char *const *);
    int (*log_size)(nvrtcProgram, size_t *);
    int (*log)(nvrtcProgram, char *);
    int (*cubin_size)(nvrtcProgram, size_t *);
    int (*cubin)(nvrtcProgram, char *);
    int (*destroy)(nvrtcProgram *);
    const char *(*error_string)(int);
    int (*version)(int *, int *);
} nvrtc;
static pthread_once_t nvrtc_once = PTHREAD_ONCE_INIT;
static bool nvrtc_ready;

static void nvrtc_load(void)
{
    void *h = NULL;
#ifdef CUDART_VERSION /* the NVRTC of the toolkit built against first */
    char name[32];
    snprintf(name, sizeof name, "libnvrtc.so.%d", CUDART_VERSION / 1000);
    h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
#endif
    if (!h) h = dlopen("libnvrtc.so", RTLD_NOW | RTLD_LOCAL);
    for (int major = 13; !h && major >= 12; major--) { /* a runtime-only install */
        char versioned[32];
        snprintf(versioned, sizeof versioned, "libnvrtc.so.%d", major);
        h = dlopen(versioned, RTLD_NOW | RTLD_LOCAL);
    }
    if (!h) return;
#define SYM(field, sym) *(void **)&nvrtc.field = dlsym(h, sym)
    SYM(create, "nvrtcCreateProgram");
    SYM(compile, "nvrtcCompileProgram");
    SYM(log_size, "nvrtcGetProgramLogSize");
    SYM(log, "nvrtcGetProgramLog");
    SYM(cubin_size, "nvrtcGetCUBINSize");
    SYM(cubin, "nvrtcGetCUBIN");
    SYM(destroy, "nvrtcDestroyProgram");
    SYM(error_string, "nvrtcGetErrorString");
    SYM(version, "nvrtcVersion");
#undef SYM
    nvrtc_ready = nvrtc.create && nvrtc.compile && nvrtc.log_size && nvrtc.log && nvrtc.cubin_size &&
                  nvrtc.cubin && nvrtc.destroy && nvrtc.error_string && nvrtc.version;
}

/* The cubin of source compiled for sm_<sm>, or NULL with an error (NVRTC's log on a failed
 * compilation); *len gets its size. own: a kernel Ponte generated, which includes Ponte's
 * headers (given to NVRTC from rtc_headers.h; their host declarations taken as device ones);
 * else a user's source, which may include the toolkit's headers. */
static char *compile_source(const char *key, const char *source, int sm, bool own, size_t *len)
{
    pthread_once(&nvrtc_once, nvrtc_load);
    if (!nvrtc_ready) {
        pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] NVRTC (libnvrtc.so) could not be loaded: %s",
                     own ? "generated kernels need CUDA's runtime compiler."
                         : "custom kernels need CUDA's runtime compiler.");
        return NULL;
    }
    char arch[32];
    snprintf(arch, sizeof arch, "--gpu-architecture=sm_%d", sm);
    /* the toolkit's headers (cuda_fp16.h, cooperative_groups.h) where NVRTC has no built-in */
    const char *home = getenv("CUDA_HOME") ? getenv("CUDA_HOME") : getenv("CUDA_PATH");
    char inc[1024], cccl[1024]; /* CUDA 13 keeps libcu++ (cuda/std/...) under include/cccl */
    snprintf(inc, sizeof inc, "-I%s/include", home ? home : "/usr/local/cuda");
    snprintf(cccl, sizeof cccl, "-I%s/include/cccl", home ? home : "/usr/local/cuda");
    const char *user_opts[] = {arch, "--std=c++17", inc, cccl};
    const char *own_opts[] = {arch, "--std=c++17", "-default-device"};
    nvrtcProgram prog = NULL;
    int rc = own ? nvrtc.create(&prog, source, key, pnG_rtc_header_count, pnG_rtc_header_texts,
                                pnG_rtc_header_names)
                 : nvrtc.create(&prog, source, key, 0, NULL, NULL);
    if (rc != 0) {
        pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] nvrtcCreateProgram failed: %s", nvrtc.error_string(rc));
        return NULL;
    }
    rc = own ? nvrtc.compile(prog, (int)(sizeof own_opts / sizeof *own_opts), own_opts)
             : nvrtc.compile(prog, (int)(sizeof user_opts / sizeof *user_opts), user_opts);
    char *out = NULL;
    if (rc != 0) {
        size_t n = 0;
        char *log = nvrtc.log_size(prog, &n) == 0 ? (char *)malloc(n + 1) : NULL;
        if (log && nvrtc.log(prog, log) == 0) log[n] = 0;
        else if (log) log[0] = 0;
        pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] Failed to compile kernel %s: %s\n%s", key,
                     nvrtc.error_string(rc), log ? log : "");
        free(log);
    } else if (nvrtc.cubin_size(prog, len) == 0 && (out = (char *)malloc(*len ? *len : 1)) &&
               nvrtc.cubin(prog, out) != 0) {
        free(out);
        out = NULL;
    }
    if (rc == 0 && !out) pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] Could not read the cubin of %s.", key);
    nvrtc.destroy(&prog);
    return out;
}

extern "C" char *pnG_rtc_compile(const char *name, const char *source, int sm, size_t *len)
{
    return compile_source(name, source, sm, true, len);
}

/* ───────────── the disk cache of generated kernels ─────────────
 * A generated kernel's compiled form (a cubin; on the simulator, a shared object) is kept in
 * $PONTE_CACHE_DIR/kernels (default $XDG_CACHE_HOME/ponte, else ~/.cache/ponte), named by a
 * hash of its source, of the headers the library carries and of the compiler and target, so
 * a later process loads it instead of compiling. Best effort: a file that cannot be written
 * is skipped, and one that does not load is compiled again and replaced.
 * PONTE_KERNEL_CACHE=0 turns it off. */

/* The hash of the embedded headers (computed once; they are constant). */
static uint64_t headers_hash;
static pthread_once_t headers_once = PTHREAD_ONCE_INIT;
static void hash_headers(void)
{
    uint64_t h = PNC_FNV_OFFSET;
    for (int i = 0; i < pnG_rtc_header_count; i++) { /* each string with its terminator */
        h = pnC_fnv1a(pnG_rtc_header_names[i], strlen(pnG_rtc_header_names[i]) + 1, h);
        h = pnC_fnv1a(pnG_rtc_header_texts[i], strlen(pnG_rtc_header_texts[i]) + 1, h);
    }
    headers_hash = h;
}

/* The cache file for source compiled as tag (target and compiler), its directory made; false
 * when the cache is off or has no directory. */
static bool cache_path(const char *source, const char *tag, char *path, size_t cap)
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
    pthread_once(&headers_once, hash_headers);
    uint64_t h = pnC_fnv1a(source, strlen(source), pnC_fnv1a(tag, strlen(tag) + 1, headers_hash));
    n = snprintf(path, cap, "%s/%016llx-%zu.%s", dir, (unsigned long long)h, strlen(source), tag);
    return n > 0 && (size_t)n < cap;
}

/* A cache file is the kernel's bytes and this trailer, checked before anything is loaded
 * from it (a truncated shared object can crash the loader). */
struct cache_trailer {
    char magic[8]; /* "PNKCACH1" */
    uint64_t len, hash;
};

/* The whole file at path (under 256 MiB; release with free()), or NULL. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    char *data = NULL;
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0 && st.st_size < ((off_t)1 << 28) &&
        (data = (char *)malloc((size_t)st.st_size)) && fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        free(data);
        data = NULL;
    }
    *len = data ? (size_t)st.st_size : 0;
    fclose(f);
    return data;
}

/* The kernel bytes of a cache file (release with free()), or NULL when it is missing,
 * unreadable or damaged. */
static char *cache_read(const char *path, size_t *len)
{
    size_t n = 0;
    char *data = read_file(path, &n);
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

/* Stores len bytes as path, whole or not at all (a temporary file renamed into place). */
static void cache_write(const char *path, const void *data, size_t len)
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

#ifdef PONTE_GPU_SIM

/* The simulated GPU cannot load device code. With PONTE_SIM_JIT=1 it runs the kernels Ponte
 * generates (never a user's) by building their source with the host C++ compiler against the
 * simulated runtime — the compiler and source tree this library was built with — into a
 * shared object of its own: the generated kernel runs through its own copy of the thread
 * state (pnsim_tls), which a wrapper kernel here hands it on every simulated thread. The
 * tests use this to check generated kernels without a GPU (each distinct source costs a C++
 * compilation, so it is off by default). */
#ifndef PONTE_SIM_CXX
#define PONTE_SIM_CXX "c++"
#endif
#ifndef PONTE_SOURCE_DIR
#define PONTE_SOURCE_DIR "."
#endif

typedef void (*sim_entry_fn)(const void *param, const pnsim_tls_t *tls);
#define SIM_MAX_PARAM 4096 /* CUDA's limit on a kernel's parameters */
struct sim_param {
    sim_entry_fn entry;
    unsigned char bytes[SIM_MAX_PARAM];
};
/* A loaded generated kernel (the handle pnG_rtc_launch gives out; never freed). */
struct pnG_rtc_kernel {
    char *key;
    sim_entry_fn entry;
};
static pnG_rtc_kernel **sim_loaded;
static size_t nsim_loaded, cap_sim_loaded;
static pthread_mutex_t sim_lock = PTHREAD_MUTEX_INITIALIZER;

static int sim_refuses(void)
{
    pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] The simulated GPU cannot load device code: custom and "
                                 "generated kernels need a real GPU with NVRTC.");
    return -1;
}

/* What the shared object adds to a generated source: its own thread state and an entry that
 * takes the caller's, then calls the kernel with its one parameter. */
static const char sim_entry_text[] =
    "\n__thread pnsim_tls_t pnsim_tls;\n"
    "template <typename P> static void pn_sim_call(void (*k)(P), const void *p) { k(*(const P *)p); }\n"
    "extern \"C\" void pn_sim_entry(const void *p, const pnsim_tls_t *t)\n"
    "{\n    pnsim_tls = *t;\n    pn_sim_call(%s, p);\n}\n";

/* The pn_sim_entry of the shared object at path, or NULL (with why: dlerror's text). */
static sim_entry_fn sim_load(const char *path, const char **why)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    sim_entry_fn fn = NULL;
    if (h) *(void **)&fn = dlsym(h, "pn_sim_entry");
    *why = !h ? dlerror() : !fn ? "no pn_sim_entry" : NULL;
    if (h && !fn) dlclose(h);
    return fn;
}

/* sim_load of a shared object held in memory (a checked cache file's bytes), through a
 * temporary file of a name of its own: the loader takes an object whose name it has loaded
 * before for that object, so names are never reused. */
static sim_entry_fn sim_load_bytes(const char *bytes, size_t len)
{
    const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[1100];
    snprintf(path, sizeof path, "%s/ponte-kernel-XXXXXX", tmp);
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    sim_entry_fn fn = NULL;
    const char *why = NULL;
    bool ok = write(fd, bytes, len) == (ssize_t)len;
    if (close(fd) == 0 && ok) fn = sim_load(path, &why);
    remove(path); /* a loaded object stays mapped */
    return fn;
}

/* Builds source (entry point entry) into a shared object, or takes it from the disk cache,
 * and loads it; its pn_sim_entry, or NULL with an error (the compiler's messages when it
 * fails). */
static sim_entry_fn sim_build(const char *key, const char *source, const char *entry)
{
    /* what the compiler sees, naming the compiler and this build of the simulator (whose
     * headers the object is compiled against), so the cache keys on them too */
    size_t cap = strlen(source) + strlen(entry) + sizeof sim_entry_text + sizeof PONTE_SIM_CXX + 96;
    char *text = (char *)malloc(cap);
    if (!text) {
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "[cuda_kernel] Out of memory.");
        return NULL;
    }
    int n = snprintf(text, cap, "/* host compiler: %s; simulator built %s %s */\n%s", PONTE_SIM_CXX, __DATE__,
                     __TIME__, source);
    snprintf(text + n, cap - (size_t)n, sim_entry_text, entry);
    char cached[1100];
    bool cache = cache_path(text, "sim.so", cached, sizeof cached);
    size_t len = 0;
    char *bytes = cache ? cache_read(cached, &len) : NULL;
    sim_entry_fn fn = bytes ? sim_load_bytes(bytes, len) : NULL;
    free(bytes);
    if (fn) {
        free(text);
        return fn;
    }
    const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[1024], src[1100], so[1100], log[1100];
    snprintf(dir, sizeof dir, "%s/ponte-sim-jit-XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        pn_set_error(PN_ERR_IO, "[cuda_kernel] Cannot make a directory under %s for a generated kernel.", tmp);
        free(text);
        return NULL;
    }
    snprintf(src, sizeof src, "%s/kernel.cu", dir);
    snprintf(so, sizeof so, "%s/kernel.so", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    FILE *f = fopen(src, "w");
    bool written = f && fputs(text, f) >= 0;
    if (f && fclose(f) != 0) written = false;
    free(text);
    if (!written) {
        pn_set_error(PN_ERR_IO, "[cuda_kernel] Cannot write %s.", src);
    } else {
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "'%s' -std=c++17 -O1 -w -shared -fPIC -xc++ -DPONTE_GPU_SIM -I'%s/src' -I'%s/include' "
                 "'%s' -o '%s' > '%s' 2>&1",
                 PONTE_SIM_CXX, PONTE_SOURCE_DIR, PONTE_SOURCE_DIR, src, so, log);
        int rc = system(cmd);
        const char *why = NULL;
        if (rc == 0) fn = sim_load(so, &why);
        if (fn && cache && (bytes = read_file(so, &len))) {
            cache_write(cached, bytes, len);
            free(bytes);
        }
        if (!fn) {
            char msg[4096] = "";
            FILE *l = fopen(log, "r");
            size_t got = l ? fread(msg, 1, sizeof msg - 1, l) : 0;
            msg[got] = 0;
            if (l) fclose(l);
            pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] The simulated GPU could not build kernel %s with %s "
                         "(exit %d) %s\n%s", key, PONTE_SIM_CXX, rc, rc == 0 && why ? why : "", msg);
        }
    }
    remove(src), remove(so), remove(log), remove(dir); /* a loaded object stays mapped */
    return fn;
}

/* One simulated thread of a generated kernel: the loaded entry with this thread's state. */
__global__ void sim_generated_kernel(const sim_param *p) { p->entry(p->bytes, &pnsim_tls); }

extern "C" int pnG_custom_kernel_launch(const char *key, const char *code, size_t code_len, bool precompiled,
                                        const char *entry, void **args, const unsigned grid[3],
                                        const unsigned block[3], unsigned smem, int stream)
{
    (void)key, (void)code, (void)code_len, (void)precompiled, (void)entry, (void)args;
    (void)grid, (void)block, (void)smem, (void)stream;
    return sim_refuses();
}

/* The loaded kernel of key: found, or built from source and added; NULL with an error. */
static pnG_rtc_kernel *sim_find_or_build(const char *key, const char *source, const char *entry)
{
    for (size_t i = 0; i < nsim_loaded; i++)
        if (!strcmp(sim_loaded[i]->key, key)) return sim_loaded[i];
    sim_entry_fn fn = sim_build(key, source, entry);
    if (!fn) return NULL;
    if (nsim_loaded == cap_sim_loaded) {
        size_t cap = cap_sim_loaded ? 2 * cap_sim_loaded : 16;
        pnG_rtc_kernel **grown = (pnG_rtc_kernel **)realloc(sim_loaded, cap * sizeof *grown);
        if (grown) sim_loaded = grown, cap_sim_loaded = cap;
    }
    pnG_rtc_kernel *k = (pnG_rtc_kernel *)malloc(sizeof *k);
    if (!k || nsim_loaded == cap_sim_loaded || !(k->key = strdup(key))) {
        free(k);
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "[cuda_kernel] Out of memory.");
        return NULL;
    }
    k->entry = fn;
    return sim_loaded[nsim_loaded++] = k;
}

extern "C" int pnG_rtc_launch(pnG_rtc_kernel **kernel, const char *key, const char *source, const char *entry,
                              const void *param, size_t param_size, const unsigned grid[3],
                              const unsigned block[3], unsigned smem, int stream)
{
    const char *on = getenv("PONTE_SIM_JIT");
    if (!on || strcmp(on, "1") != 0) return sim_refuses();
    if (param_size > SIM_MAX_PARAM) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "[cuda_kernel] Kernel parameters of %zu bytes (at most %d).",
                     param_size, SIM_MAX_PARAM);
        return -1;
    }
    if (!*kernel) {
        pthread_mutex_lock(&sim_lock);
        *kernel = sim_find_or_build(key, source, entry);
        pthread_mutex_unlock(&sim_lock);
        if (!*kernel) return -1;
    }
    sim_entry_fn fn = (*kernel)->entry;
    sim_param *p = (sim_param *)malloc(sizeof *p);
    if (!p) {
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "[cuda_kernel] Out of memory.");
        return -1;
    }
    p->entry = fn;
    memcpy(p->bytes, param, param_size);
    (void)smem;
    PNG_LAUNCH(sim_generated_kernel, dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]), 0,
               png_stream(stream), p);
    int rc = pnG_check_launch("generated kernel");
    free(p);
    return rc;
}

#else

/* The compute capability of the current device as 10 * major + minor, or -1 with an error. */
static int device_sm(void)
{
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
        pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] Cannot read the device's compute capability.");
        return -1;
    }
    return 10 * major + minor;
}

/* The cubin of source for this device: compile_source for its sm_XY, or for a kernel Ponte
 * generated, the disk cache's copy when it has one (*cached says so; path: where to store a
 * fresh one, "" for none). */
static char *compile_for_device(const char *key, const char *source, bool own, size_t *len, bool *cached,
                                char *path, size_t path_cap)
{
    *cached = false;
    path[0] = 0;
    const int sm = device_sm();
    if (sm < 0) return NULL;
    pthread_once(&nvrtc_once, nvrtc_load);
    int vmaj = 0, vmin = 0;
    if (own && nvrtc_ready && nvrtc.version(&vmaj, &vmin) == 0) {
        char tag[48];
        snprintf(tag, sizeof tag, "sm%d.nvrtc%d.%d.cubin", sm, vmaj, vmin);
        if (!cache_path(source, tag, path, path_cap)) path[0] = 0;
        char *image = path[0] ? cache_read(path, len) : NULL;
        if (image) {
            *cached = true;
            return image;
        }
    }
    return compile_source(key, source, sm, own, len);
}

/* Loaded kernels by key (the module stays loaded: launches may still be queued; an entry is
 * never freed, so a generated kernel's handle stays valid). */
struct pnG_rtc_kernel {
    char *key;
    cudaLibrary_t lib;
    cudaKernel_t kernel;
    unsigned smem_set; /* dynamic shared memory the kernel is allowed so far */
};
typedef pnG_rtc_kernel loaded_kernel;
static loaded_kernel **loaded;
static size_t nloaded, cap_loaded;
static pthread_mutex_t loaded_lock = PTHREAD_MUTEX_INITIALIZER;

static loaded_kernel *find_or_load(const char *key, const char *code, size_t code_len, bool precompiled,
                                   bool own, const char *entry)
{
    for (size_t i = 0; i < nloaded; i++)
        if (!strcmp(loaded[i]->key, key)) return loaded[i];
    size_t len = code_len;
    bool cached = false;
    char path[1100] = "";
    char *image = precompiled ? NULL : compile_for_device(key, code, own, &len, &cached, path, sizeof path);
    if (!precompiled && !image) return NULL;
    const void *data = precompiled ? (const void *)code : image;
    char *nul_terminated = NULL;
    if (precompiled && (len == 0 || code[len - 1] != 0)) { /* PTX is read as a C string */
        nul_terminated = (char *)malloc(len + 1);
        if (!nul_terminated) {
            pn_set_error(PN_ERR_OUT_OF_MEMORY, "[cuda_kernel] Out of memory.");
            return NULL;
        }
        memcpy(nul_terminated, code, len);
        nul_terminated[len] = 0;
        data = nul_terminated;
    }
    loaded_kernel e = {NULL, NULL, NULL, 0};
    cudaError_t err = cudaLibraryLoadData(&e.lib, data, NULL, NULL, 0, NULL, NULL, 0);
    if (err == cudaSuccess) err = cudaLibraryGetKernel(&e.kernel, e.lib, entry);
    if (err != cudaSuccess && cached) { /* a cache file that does not load: compile again */
        if (e.lib) cudaLibraryUnload(e.lib);
        cudaGetLastError();
        e.lib = NULL;
        free(image);
        cached = false;
        image = compile_source(key, code, device_sm(), own, &len);
        if (!image) return NULL;
        err = cudaLibraryLoadData(&e.lib, image, NULL, NULL, 0, NULL, NULL, 0);
        if (err == cudaSuccess) err = cudaLibraryGetKernel(&e.kernel, e.lib, entry);
    }
    if (err == cudaSuccess && !cached && path[0]) cache_write(path, image, len);
    free(image);
    free(nul_terminated);
    if (err != cudaSuccess) {
        if (e.lib) cudaLibraryUnload(e.lib);
        cudaGetLastError();
        pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] Could not load kernel %s (%s): %s", entry, key,
                     cudaGetErrorString(err));
        return NULL;
    }
    if (nloaded == cap_loaded) {
        size_t cap = cap_loaded ? 2 * cap_loaded : 16;
        loaded_kernel **grown = (loaded_kernel **)realloc(loaded, cap * sizeof *grown);
        if (grown) loaded = grown, cap_loaded = cap;
    }
    loaded_kernel *k = nloaded < cap_loaded ? (loaded_kernel *)malloc(sizeof *k) : NULL;
    if (!k || !(e.key = strdup(key))) {
        free(k);
        cudaLibraryUnload(e.lib);
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "[cuda_kernel] Out of memory.");
        return NULL;
    }
    *k = e;
    return loaded[nloaded++] = k;
}

/* find_or_load (unless *handle holds the kernel already; it gets the kernel), then the
 * launch. */
static int launch(loaded_kernel **handle, const char *key, const char *code, size_t code_len, bool precompiled,
                  bool own, const char *entry, void **args, const unsigned grid[3], const unsigned block[3],
                  unsigned smem, int stream)
{
    pthread_mutex_lock(&loaded_lock);
    loaded_kernel *k = *handle ? *handle : (*handle = find_or_load(key, code, code_len, precompiled, own, entry));
    cudaError_t err = cudaSuccess;
    if (k && smem > 48 * 1024 && smem > k->smem_set) {
        err = cudaFuncSetAttribute((const void *)k->kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (err == cudaSuccess) k->smem_set = smem;
    }
    cudaKernel_t kernel = k ? k->kernel : NULL;
    pthread_mutex_unlock(&loaded_lock);
    if (!k) return -1;
    if (err == cudaSuccess)
        err = cudaLaunchKernel((const void *)kernel, dim3(grid[0], grid[1], grid[2]),
                               dim3(block[0], block[1], block[2]), args, smem, png_stream(stream));
    if (err != cudaSuccess) {
        cudaGetLastError();
        pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] Launch of %s failed: %s", key, cudaGetErrorString(err));
        return -1;
    }
    return 0;
}

extern "C" int pnG_custom_kernel_launch(const char *key, const char *code, size_t code_len, bool precompiled,
                                        const char *entry, void **args, const unsigned grid[3],
                                        const unsigned block[3], unsigned smem, int stream)
{
    loaded_kernel *k = NULL;
    return launch(&k, key, code, code_len, precompiled, false, entry, args, grid, block, smem, stream);
}

extern "C" int pnG_rtc_launch(pnG_rtc_kernel **kernel, const char *key, const char *source, const char *entry,
                              const void *param, size_t param_size, const unsigned grid[3],
                              const unsigned block[3], unsigned smem, int stream)
{
    (void)param_size;
    void *args[] = {(void *)param};
    return launch(kernel, key, source, strlen(source), false, true, entry, args, grid, block, smem, stream);
}

#endif /* PONTE_GPU_SIM */
