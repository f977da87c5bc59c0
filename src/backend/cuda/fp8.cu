/* fp8.cu — ToFP8 on the GPU: one grid-stride kernel mapping float32 elements to their fp8
 * e4m3 codes through pnK_e4m3_code, the codec the CPU kernel and the mxfp8 quantizer share
 * (backend/cpu/quant_codec.h), so both devices give the same bits. */
#include "backend/cuda/common.cuh"
#include "backend/cuda/fp8.h"

#include "backend/cpu/quant_codec.h"

static const int FP8_THREADS = 256;

/* o[i] = code of x[i] for i < n. */
__global__ void to_fp8_kernel(const float *x, uint8_t *o, int64_t n)
{
    for (int64_t i = png_thread_index(); i < n; i += png_grid_stride()) o[i] = pnK_e4m3_code(x[i]);
}

/* See fp8.h. */
extern "C" int pnG_launch_to_fp8(const float *x, uint8_t *o, int64_t n, int stream)
{
    PNG_LAUNCH(to_fp8_kernel, png_blocks_for(n, FP8_THREADS), FP8_THREADS, 0, png_stream(stream), x, o, n);
    return pnG_check_launch("to_fp8");
}
