/* fft.cu — the GPU FFT behind the FFT primitive: one axis of a contiguous array per call through
 * cuFFT's advanced layout (rank 1, strided lines; the outer or inner extents that one plan
 * cannot batch are looped over, whichever is shorter), plans cached per (type, layout, batch,
 * stream), and a scaling kernel for inverse transforms. With PONTE_GPU_SIM the same code calls
 * the simulated cuFFT (sim/cufft_sim.h). */
#include "backend/cuda/common.cuh"
#include "backend/cuda/fft.h"
#include "backend/cpu/fft.h"

#ifdef PONTE_GPU_SIM
#include "backend/cuda/sim/cufft_sim.h"
#else
#include <cufft.h>
#endif

#include <limits.h>
#include <stdint.h>
#include <pthread.h>
#include <string.h>

/* Plans kept (linear search; when full, a plan is made per call and destroyed after it). */
#define FFT_PLANS 256

typedef struct fft_key {
    int type, n, istride, idist, ostride, odist, batch, stream;
} fft_key;

typedef struct fft_plan_slot {
    fft_key key;
    bool used;
    cufftHandle plan;
} fft_plan_slot;

static pthread_mutex_t plans_lock = PTHREAD_MUTEX_INITIALIZER;
static fft_plan_slot plans[FFT_PLANS];

static int fft_fail(const char *what, cufftResult r)
{
    pn_set_error(PN_ERR_BACKEND, "[cufft] %s failed (status %d)", what, (int)r);
    return -1;
}

static cufftResult plan_make(const fft_key *k, cufftHandle *h)
{
    int n = k->n, nin = k->type == CUFFT_C2R ? n / 2 + 1 : n;
    int nout = k->type == CUFFT_R2C ? n / 2 + 1 : n;
    cudaStream_t cs = png_stream(k->stream); /* its GPU is current: the plan is made there */
    if (!cs) return CUFFT_SETUP_FAILED;
    cufftResult r = cufftPlanMany(h, 1, &n, &nin, k->istride, k->idist, &nout, k->ostride,
                                  k->odist, (cufftType)k->type, k->batch);
    if (r != CUFFT_SUCCESS) return r;
    r = cufftSetStream(*h, cs);
    if (r != CUFFT_SUCCESS) cufftDestroy(*h);
    return r;
}

/* The cached plan of k (*temp false), or a new one to destroy after use (*temp true). */
static int plan_get(const fft_key *k, cufftHandle *h, bool *temp)
{
    pthread_mutex_lock(&plans_lock);
    int free_slot = -1;
    for (int i = 0; i < FFT_PLANS; i++) {
        if (plans[i].used && !memcmp(&plans[i].key, k, sizeof *k)) {
            *h = plans[i].plan;
            *temp = false;
            pthread_mutex_unlock(&plans_lock);
            return 0;
        }
        if (!plans[i].used && free_slot < 0) free_slot = i;
    }
    cufftResult r = plan_make(k, h);
    if (r == CUFFT_SUCCESS && free_slot >= 0) {
        plans[free_slot].key = *k;
        plans[free_slot].plan = *h;
        plans[free_slot].used = true;
    }
    *temp = free_slot < 0;
    pthread_mutex_unlock(&plans_lock);
    return r == CUFFT_SUCCESS ? 0 : fft_fail("cufftPlanMany", r);
}

/* One execution of the plan of k at (in, out). */
static int exec(const fft_key *k, bool inverse, void *in, void *out)
{
    cufftHandle h;
    bool temp;
    if (plan_get(k, &h, &temp)) return -1;
    cufftResult r;
    if (k->type == CUFFT_C2C)
        r = cufftExecC2C(h, (cufftComplex *)in, (cufftComplex *)out,
                         inverse ? CUFFT_INVERSE : CUFFT_FORWARD);
    else if (k->type == CUFFT_R2C)
        r = cufftExecR2C(h, (cufftReal *)in, (cufftComplex *)out);
    else
        r = cufftExecC2R(h, (cufftComplex *)in, (cufftReal *)out);
    if (temp) {
        cudaStreamSynchronize(png_stream(k->stream));
        cufftDestroy(h);
    }
    return r == CUFFT_SUCCESS ? 0 : fft_fail("cufftExec", r);
}

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* cuFFT refuses (CUFFT_INVALID_VALUE) a real transform whose real-side pointer is not aligned
 * to a complex element (8 bytes): such a span of nreal floats goes through aligned scratch
 * (copied in for R2C, out for C2R). Other executions run in place. */
static int exec_aligned(const fft_key *k, bool inverse, char *src, char *dst, int64_t nreal)
{
    char *real = k->type == CUFFT_R2C ? src : k->type == CUFFT_C2R ? dst : NULL;
    if (!real || (uintptr_t)real % sizeof(cufftComplex) == 0) return exec(k, inverse, src, dst);
    size_t bytes = (size_t)nreal * sizeof(float);
    char *scratch = (char *)pnG_malloc(bytes, k->stream);
    if (!scratch) return -1;
    int rc = 0;
    if (k->type == CUFFT_R2C) {
        rc = pnG_copy_device(scratch, src, bytes, k->stream);
        if (rc == 0) rc = exec(k, inverse, scratch, dst);
    } else {
        rc = exec(k, inverse, src, scratch);
        if (rc == 0)
            rc = pnG_copy_device(dst, scratch, bytes, k->stream);
    }
    pnG_free(scratch, bytes, k->stream);
    return rc;
}

/* See fft.h. */
extern "C" int pnG_fft_axis(int kind, bool inverse, int64_t pre, int64_t n, int64_t post,
                            const void *in, void *out, int stream)
{
    int64_t nin = kind == PNK_FFT_C2R ? n / 2 + 1 : n, nout = kind == PNK_FFT_R2C ? n / 2 + 1 : n;
    size_t ein = kind == PNK_FFT_R2C ? sizeof(float) : sizeof(cufftComplex);
    size_t eout = kind == PNK_FFT_C2R ? sizeof(float) : sizeof(cufftComplex);
    if (!fits_int(n) || !fits_int(pre) || !fits_int(post) || !fits_int(nin * post) ||
        !fits_int(nout * post) || !fits_int(nin * pre) || !fits_int(nout * pre))
        return PNG_UNSUPPORTED;
    fft_key k = {};
    k.type = kind == PNK_FFT_C2C ? CUFFT_C2C : kind == PNK_FFT_R2C ? CUFFT_R2C : CUFFT_C2R;
    k.n = (int)n;
    k.stream = stream;
    char *src = (char *)in, *dst = (char *)out;
    if (post == 1) { /* dense lines: one batch over pre */
        k.istride = k.ostride = 1;
        k.idist = (int)nin;
        k.odist = (int)nout;
        k.batch = (int)pre;
        return exec_aligned(&k, inverse, src, dst, pre * n);
    }
    k.istride = k.ostride = (int)post;
    /* Real transforms always loop over pre: looping over the inner extent would start the
     * real side at every float, which cuFFT refuses. */
    if (pre <= post || k.type != CUFFT_C2C) { /* batch over the inner extent, loop over pre */
        k.idist = k.odist = 1;
        k.batch = (int)post;
        for (int64_t i = 0; i < pre; i++)
            if (exec_aligned(&k, inverse, src + (size_t)(i * nin * post) * ein,
                             dst + (size_t)(i * nout * post) * eout, n * post))
                return -1;
        return 0;
    }
    k.idist = (int)(nin * post); /* batch over pre, loop over the inner extent */
    k.odist = (int)(nout * post);
    k.batch = (int)pre;
    for (int64_t i = 0; i < post; i++)
        if (exec(&k, inverse, src + (size_t)i * ein, dst + (size_t)i * eout)) return -1;
    return 0;
}

__global__ void fft_scale_kernel(float *data, int64_t count, float scale)
{
    for (int64_t i = png_thread_index(); i < count; i += png_grid_stride()) data[i] *= scale;
}

/* See fft.h. */
extern "C" int pnG_fft_scale(bool is_complex, int64_t count, void *data, double scale,
                             int stream)
{
    int64_t m = is_complex ? 2 * count : count;
    if (m <= 0) return 0;
    const int threads = 256;
    PNG_LAUNCH(fft_scale_kernel, png_blocks_for(m, threads), threads, 0, png_stream(stream),
               (float *)data, m, (float)scale);
    return pnG_check_launch("fft_scale_kernel");
}
