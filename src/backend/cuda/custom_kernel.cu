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
    int (*ptx_size)(nvrtcProgram, size_t *);
    int (*ptx)(nvrtcProgram, char *);
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
    SYM(ptx_size, "nvrtcGetPTXSize");
    SYM(ptx, "nvrtcGetPTX");
    SYM(destroy, "nvrtcDestroyProgram");
    SYM(error_string, "nvrtcGetErrorString");
    SYM(version, "nvrtcVersion");
#undef SYM
    nvrtc_ready = nvrtc.create && nvrtc.compile && nvrtc.log_size && nvrtc.log && nvrtc.cubin_size &&
                  nvrtc.cubin && nvrtc.ptx_size && nvrtc.ptx && nvrtc.destroy && nvrtc.error_string && nvrtc.version;
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
    char arch[48]; /* sm < 0: PTX for the virtual architecture compute_<-sm> */
    snprintf(arch, sizeof arch, "--gpu-architecture=%s_%d", sm < 0 ? "compute" : "sm", sm < 0 ? -sm : sm);
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
    } else if (sm < 0 ? nvrtc.ptx_size(prog, len) == 0 && (out = (char *)malloc(*len ? *len : 1)) &&
                            nvrtc.ptx(prog, out) != 0
                      : nvrtc.cubin_size(prog, len) == 0 && (out = (char *)malloc(*len ? *len : 1)) &&
                            nvrtc.cubin(prog, out) != 0) {
        free(out);
        out = NULL;
    }
    if (rc == 0 && !out) pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] Could not read the compiled code of %s.", key);
    nvrtc.destroy(&prog);
    return out;
}

extern "C" char *pnG_rtc_compile(const char *name, const char *source, int sm, size_t *len)
{
    return compile_source(name, source, sm, true, len);
}

/* ───────────── the disk cache of generated kernels ─────────────
 * A generated kernel's cubin is kept in the disk cache of src/core/jit.c, named by a hash of
 * its source, of the headers the library carries and of the compiler and target, so a later
 * process loads it instead of compiling; one that does not load is compiled again and
 * replaced. (The simulator's shared objects go through pnC_host_build, cached the same way.) */
#ifndef PONTE_GPU_SIM

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

/* The cache file for source compiled as tag (target and compiler), keyed on the embedded
 * headers too. */
static bool cache_path(const char *source, const char *tag, char *path, size_t cap)
{
    pthread_once(&headers_once, hash_headers);
    return pnC_kcache_path(source, tag, headers_hash, path, cap);
}

#endif /* !PONTE_GPU_SIM */

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
    size_t size; /* of the parameter in bytes */
    unsigned char bytes[SIM_MAX_PARAM];
};
/* The launch checks the pointers a generated kernel's parameter carries: each word of it (its
 * layout is the generated source's; pnG_rtc_launch's callers zero its unused bytes). */
static inline void pnsim_param_pointers(const sim_param &p, pnsim_param_visit &v) { v.words(p.bytes, p.size); }
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

/* Builds source (entry point entry) with the host C++ compiler against this build of the
 * simulator into a shared object, or takes it from the disk cache, and loads it; its
 * pn_sim_entry, or NULL with an error (the compiler's messages when it fails). */
static sim_entry_fn sim_build(const char *key, const char *source, const char *entry)
{
    (void)key;
    /* what the compiler sees, naming this build of the simulator (whose headers the object is
     * compiled against), so the cache keys on it too */
    size_t cap = strlen(source) + strlen(entry) + sizeof sim_entry_text + 96;
    char *text = (char *)malloc(cap);
    if (!text) {
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "[cuda_kernel] Out of memory.");
        return NULL;
    }
    int n = snprintf(text, cap, "/* simulator built %s %s */\n%s", __DATE__, __TIME__, source);
    snprintf(text + n, cap - (size_t)n, sim_entry_text, entry);
    static char inc_src[1100], inc_include[1100];
    snprintf(inc_src, sizeof inc_src, "-I%s/src", PONTE_SOURCE_DIR);
    snprintf(inc_include, sizeof inc_include, "-I%s/include", PONTE_SOURCE_DIR);
    const char *flags[] = {"-std=c++17", "-O1", "-w", "-xc++", "-DPONTE_GPU_SIM", inc_src, inc_include, NULL};
    sim_entry_fn fn = NULL;
    *(void **)&fn = pnC_host_build("cuda_kernel", PONTE_SIM_CXX, flags, NULL, "cu", text, "pn_sim_entry");
    free(text);
    return fn;
}

/* One simulated thread of a generated kernel: the loaded entry with this thread's state. */
/* The parameter is kept by value in the launch (and in a graph that records it), read in
 * place by each thread. */
__global__ void sim_generated_kernel(const sim_param &p) { p.entry(p.bytes, &pnsim_tls); }

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
    sim_param *p = (sim_param *)malloc(sizeof *p); /* too large for the C stack's comfort */
    if (!p) {
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "[cuda_kernel] Out of memory.");
        return -1;
    }
    p->entry = (*kernel)->entry;
    p->size = param_size;
    memcpy(p->bytes, param, param_size);
    (void)smem;
    PNG_LAUNCH(sim_generated_kernel, dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]), 0,
               png_stream(stream), *p);
    free(p);
    return pnG_check_launch("generated kernel");
}

#else

/* The compute capability of the current device as 10 * major + minor (read once per
 * device), or -1 with an error. */
static int device_sm(void)
{
    static int known[PNG_MAX_DEVICES]; /* by device; 0 until read */
    const int dev = pnG_current_device();
    int major = 0, minor = 0, sm = __atomic_load_n(&known[dev], __ATOMIC_RELAXED);
    if (sm) return sm;
    const int cuda_dev = pnG_cuda_device(dev);
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, cuda_dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, cuda_dev) == cudaSuccess) {
        __atomic_store_n(&known[dev], 10 * major + minor, __ATOMIC_RELAXED);
        return 10 * major + minor;
    }
    cudaGetLastError();
    pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] Cannot read the device's compute capability.");
    return -1;
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
        char *image = path[0] ? pnC_kcache_read(path, len) : NULL;
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
    int sm;                /* the architecture it was compiled for (0: PTX, any) */
    unsigned smem_set[PNG_MAX_DEVICES]; /* dynamic shared memory allowed so far, by device */
};
typedef pnG_rtc_kernel loaded_kernel;
static loaded_kernel **loaded;
static size_t nloaded, cap_loaded;
static pthread_mutex_t loaded_lock = PTHREAD_MUTEX_INITIALIZER;

static loaded_kernel *find_or_load(const char *key, const char *code, size_t code_len, bool precompiled,
                                   bool own, const char *entry)
{
    int sm = precompiled ? 0 : device_sm(); /* GPUs of two architectures load a cubin each */
    if (sm < 0) return NULL;
    for (size_t i = 0; i < nloaded; i++)
        if (loaded[i]->sm == sm && !strcmp(loaded[i]->key, key)) return loaded[i];
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
    loaded_kernel e = {NULL, NULL, NULL, sm, {0}};
    cudaError_t err = cudaLibraryLoadData(&e.lib, data, NULL, NULL, 0, NULL, NULL, 0);
    if (err == cudaSuccess) err = cudaLibraryGetKernel(&e.kernel, e.lib, entry);
    if (err != cudaSuccess && cached) { /* a cache file that does not load: compile again */
        if (e.lib) cudaLibraryUnload(e.lib);
        cudaGetLastError();
        e.lib = NULL;
        free(image);
        cached = false;
        image = compile_source(key, code, sm, own, &len);
        if (!image) return NULL;
        err = cudaLibraryLoadData(&e.lib, image, NULL, NULL, 0, NULL, NULL, 0);
        if (err == cudaSuccess) err = cudaLibraryGetKernel(&e.kernel, e.lib, entry);
    }
    if (err == cudaSuccess && !cached && path[0]) pnC_kcache_write(path, image, len);
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
    cudaStream_t cs = png_stream(stream); /* its device is current: the attribute is set there */
    if (!cs) return -1;
    const int dev = pnG_current_device();
    int sm = precompiled ? 0 : device_sm();
    if (sm < 0) return -1;
    pthread_mutex_lock(&loaded_lock);
    loaded_kernel *k = *handle && (*handle)->sm == sm
                           ? *handle
                           : (*handle = find_or_load(key, code, code_len, precompiled, own, entry));
    cudaError_t err = cudaSuccess;
    if (k && smem > 48 * 1024 && smem > k->smem_set[dev]) {
        err = cudaFuncSetAttribute((const void *)k->kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (err == cudaSuccess) k->smem_set[dev] = smem;
    }
    cudaKernel_t kernel = k ? k->kernel : NULL;
    pthread_mutex_unlock(&loaded_lock);
    if (!k) return -1;
    if (err == cudaSuccess)
        err = cudaLaunchKernel((const void *)kernel, dim3(grid[0], grid[1], grid[2]),
                               dim3(block[0], block[1], block[2]), args, smem, cs);
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
