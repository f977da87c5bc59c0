/* cufft_sim.cpp — the simulated cuFFT (cufft_sim.h): plans are slots of a table holding the
 * layout, the plan's device and stream; execution checks the type and the device at the call
 * and runs every line in stream order (pnsim_library_run) through pnK_fft_lines, the CPU
 * FFT's batched line transform, unnormalized. */
#include "backend/cuda/sim/cufft_sim.h"
#include "backend/cuda/sim/sim_internal.h"
#include "backend/cpu/fft.h"

#include <mutex>
#include <stdint.h>

namespace {

struct sim_plan {
    bool used;
    int n, istride, idist, ostride, odist, batch;
    cufftType type;
    int dev;             /* the device current at cufftPlanMany */
    cudaStream_t stream; /* cufftSetStream's; 0 until set */
};

const int MAX_PLANS = 1024;
sim_plan plans[MAX_PLANS];
std::mutex plans_lock;

sim_plan *lookup(cufftHandle h)
{
    std::lock_guard<std::mutex> g(plans_lock);
    if (h < 1 || h > MAX_PLANS || !plans[h - 1].used) return nullptr;
    return &plans[h - 1];
}

/* Checks a transform with plan h as cuFFT does, at the call, then runs it in stream order
 * (pnsim_library_run) with the plan's parameters as they are now. */
cufftResult exec(cufftHandle h, cufftType want, bool inverse, const void *in, void *out)
{
    sim_plan *p = lookup(h);
    if (!p) return CUFFT_INVALID_PLAN;
    if (p->type != want) return CUFFT_INVALID_TYPE;
    if (!in || !out) return CUFFT_INVALID_VALUE;
    /* the plan's device must be current, and the plan's stream its */
    if (!pnsim_library_device_ok(p->dev, p->stream)) return CUFFT_EXEC_FAILED;
    int kind = want == CUFFT_C2C ? PNK_FFT_C2C : want == CUFFT_R2C ? PNK_FFT_R2C : PNK_FFT_C2R;
    const sim_plan q = *p; /* by value: the plan may be destroyed once the call returns */
    return pnsim_library_run(q.stream, CUFFT_SUCCESS, [=] {
        return pnK_fft_lines(kind, inverse, q.n, q.batch, in, q.istride, q.idist, out, q.ostride,
                             q.odist, 1.0)
                   ? CUFFT_EXEC_FAILED
                   : CUFFT_SUCCESS;
    });
}

} // namespace

cufftResult cufftPlanMany(cufftHandle *plan, int rank, int *n, int *inembed, int istride,
                          int idist, int *onembed, int ostride, int odist, cufftType type,
                          int batch)
{
    if (!plan || !n) return CUFFT_INVALID_VALUE;
    if (rank != 1) return CUFFT_INVALID_SIZE;
    if (n[0] < 1 || batch < 1) return CUFFT_INVALID_SIZE;
    if (type != CUFFT_C2C && type != CUFFT_R2C && type != CUFFT_C2R) return CUFFT_INVALID_TYPE;
    std::lock_guard<std::mutex> g(plans_lock);
    for (int i = 0; i < MAX_PLANS; i++)
        if (!plans[i].used) {
            sim_plan &p = plans[i];
            p.used = true;
            p.n = n[0];
            p.type = type;
            p.batch = batch;
            p.dev = pnsim_current_device();
            p.stream = nullptr;
            /* without embeddings cuFFT uses the basic (dense) layout */
            int nin = type == CUFFT_C2R ? n[0] / 2 + 1 : n[0];
            int nout = type == CUFFT_R2C ? n[0] / 2 + 1 : n[0];
            p.istride = inembed ? istride : 1;
            p.idist = inembed ? idist : nin;
            p.ostride = onembed ? ostride : 1;
            p.odist = onembed ? odist : nout;
            *plan = i + 1;
            return CUFFT_SUCCESS;
        }
    return CUFFT_ALLOC_FAILED;
}

cufftResult cufftSetStream(cufftHandle plan, cudaStream_t stream)
{
    sim_plan *p = lookup(plan);
    if (!p) return CUFFT_INVALID_PLAN;
    p->stream = stream; /* the stream's device is checked at execution */
    return CUFFT_SUCCESS;
}

cufftResult cufftDestroy(cufftHandle plan)
{
    sim_plan *p = lookup(plan);
    if (!p) return CUFFT_INVALID_PLAN;
    std::lock_guard<std::mutex> g(plans_lock);
    p->used = false;
    return CUFFT_SUCCESS;
}

cufftResult cufftExecC2C(cufftHandle plan, cufftComplex *idata, cufftComplex *odata,
                         int direction)
{
    if (direction != CUFFT_FORWARD && direction != CUFFT_INVERSE) return CUFFT_INVALID_VALUE;
    return exec(plan, CUFFT_C2C, direction == CUFFT_INVERSE, idata, odata);
}

/* As cuFFT: a real transform's real side must be aligned to a complex element. */
static bool complex_aligned(const void *p) { return (uintptr_t)p % sizeof(cufftComplex) == 0; }

cufftResult cufftExecR2C(cufftHandle plan, cufftReal *idata, cufftComplex *odata)
{
    if (!complex_aligned(idata)) return CUFFT_INVALID_VALUE;
    return exec(plan, CUFFT_R2C, false, idata, odata);
}

cufftResult cufftExecC2R(cufftHandle plan, cufftComplex *idata, cufftReal *odata)
{
    if (!complex_aligned(odata)) return CUFFT_INVALID_VALUE;
    return exec(plan, CUFFT_C2R, true, idata, odata);
}
