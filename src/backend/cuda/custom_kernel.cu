/* custom_kernel.cu — runtime compilation and launch of user CUDA kernels (mx.fast.cuda_kernel,
 * precompiled_cuda_kernel). NVRTC is loaded with dlopen on first use (libnvrtc.so.<major>,
 * then libnvrtc.so), so the library has no link-time dependency on it; the source is compiled
 * for the current device's sm_XY to a cubin and loaded with the CUDA 12 library API
 * (cudaLibraryLoadData / cudaLibraryGetKernel), which also takes PTX and cubins as they are.
 * Loaded modules are cached by key for the life of the process (as MLX's JIT cache). The
 * simulated runtime has no compiler for device code: there every launch is a clear error. */
#include "backend/cuda/common.cuh"
#include "backend/cuda/custom_kernel.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifdef PONTE_GPU_SIM

extern "C" int pnG_custom_kernel_launch(const char *key, const char *code, size_t code_len, bool precompiled,
                                        const char *entry, void **args, const unsigned grid[3],
                                        const unsigned block[3], unsigned smem, int stream)
{
    (void)key, (void)code, (void)code_len, (void)precompiled, (void)entry, (void)args;
    (void)grid, (void)block, (void)smem, (void)stream;
    pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] The simulated GPU cannot compile or load device code: "
                                 "custom kernels need a real GPU with NVRTC.");
    return -1;
}

#else

#include <dlfcn.h>

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
} nvrtc;
static pthread_once_t nvrtc_once = PTHREAD_ONCE_INIT;
static bool nvrtc_ready;

static void nvrtc_load(void)
{
    char name[32];
    snprintf(name, sizeof name, "libnvrtc.so.%d", CUDART_VERSION / 1000);
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libnvrtc.so", RTLD_NOW | RTLD_LOCAL);
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
#undef SYM
    nvrtc_ready = nvrtc.create && nvrtc.compile && nvrtc.log_size && nvrtc.log && nvrtc.cubin_size &&
                  nvrtc.cubin && nvrtc.destroy && nvrtc.error_string;
}

/* The cubin of source for this device, or NULL with an error (NVRTC's log on a failed
 * compilation). *len gets its size. */
static char *compile_source(const char *key, const char *source, size_t *len)
{
    pthread_once(&nvrtc_once, nvrtc_load);
    if (!nvrtc_ready) {
        pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] NVRTC (libnvrtc.so) could not be loaded: custom "
                                     "kernels need CUDA's runtime compiler.");
        return NULL;
    }
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
        pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] Cannot read the device's compute capability.");
        return NULL;
    }
    char arch[32];
    snprintf(arch, sizeof arch, "--gpu-architecture=sm_%d%d", major, minor);
    /* the toolkit's headers (cuda_fp16.h, cooperative_groups.h) where NVRTC has no built-in */
    const char *home = getenv("CUDA_HOME") ? getenv("CUDA_HOME") : getenv("CUDA_PATH");
    char inc[1024], cccl[1024]; /* CUDA 13 keeps libcu++ (cuda/std/...) under include/cccl */
    snprintf(inc, sizeof inc, "-I%s/include", home ? home : "/usr/local/cuda");
    snprintf(cccl, sizeof cccl, "-I%s/include/cccl", home ? home : "/usr/local/cuda");
    const char *opts[] = {arch, "--std=c++17", inc, cccl};
    nvrtcProgram prog = NULL;
    int rc = nvrtc.create(&prog, source, key, 0, NULL, NULL);
    if (rc != 0) {
        pn_set_error(PN_ERR_BACKEND, "[cuda_kernel] nvrtcCreateProgram failed: %s", nvrtc.error_string(rc));
        return NULL;
    }
    rc = nvrtc.compile(prog, (int)(sizeof opts / sizeof *opts), opts);
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

/* Loaded kernels by key (the module stays loaded: launches may still be queued). */
static struct loaded {
    char *key;
    cudaLibrary_t lib;
    cudaKernel_t kernel;
    unsigned smem_set; /* dynamic shared memory the kernel is allowed so far */
} *loaded;
static size_t nloaded, cap_loaded;
static pthread_mutex_t loaded_lock = PTHREAD_MUTEX_INITIALIZER;

static struct loaded *find_or_load(const char *key, const char *code, size_t code_len, bool precompiled,
                                   const char *entry)
{
    for (size_t i = 0; i < nloaded; i++)
        if (!strcmp(loaded[i].key, key)) return &loaded[i];
    size_t len = code_len;
    char *image = precompiled ? NULL : compile_source(key, code, &len);
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
    struct loaded e = {NULL, NULL, NULL, 0};
    cudaError_t err = cudaLibraryLoadData(&e.lib, data, NULL, NULL, 0, NULL, NULL, 0);
    if (err == cudaSuccess) err = cudaLibraryGetKernel(&e.kernel, e.lib, entry);
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
        struct loaded *grown = (struct loaded *)realloc(loaded, cap * sizeof *grown);
        if (!grown) {
            cudaLibraryUnload(e.lib);
            pn_set_error(PN_ERR_OUT_OF_MEMORY, "[cuda_kernel] Out of memory.");
            return NULL;
        }
        loaded = grown, cap_loaded = cap;
    }
    if (!(e.key = strdup(key))) {
        cudaLibraryUnload(e.lib);
        pn_set_error(PN_ERR_OUT_OF_MEMORY, "[cuda_kernel] Out of memory.");
        return NULL;
    }
    loaded[nloaded] = e;
    return &loaded[nloaded++];
}

extern "C" int pnG_custom_kernel_launch(const char *key, const char *code, size_t code_len, bool precompiled,
                                        const char *entry, void **args, const unsigned grid[3],
                                        const unsigned block[3], unsigned smem, int stream)
{
    pthread_mutex_lock(&loaded_lock);
    struct loaded *k = find_or_load(key, code, code_len, precompiled, entry);
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

#endif /* PONTE_GPU_SIM */
