/* random.cu — RandomBits on the GPU: threefry2x32-20 with exactly the counter layout of the
 * CPU kernel (src/backend/cpu/random.c, MLX's): a thread per counter pair of a key's block, so
 * the same key gives the same bits on both devices. SqrtSVD (multivariate_normal's matrix
 * square root): the CPU kernel's Jacobi sweeps (cpu/sqrt_svd.h), a thread per matrix. */
#include "backend/cpu/sqrt_svd.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/random.h"

static const int RNG_THREADS = 256;

__device__ __forceinline__ uint32_t rng_rotl(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

/* Threefry-2x32-20 of the counter (c0, c1) under key (k0, k1). */
__device__ __forceinline__ void rng_threefry(uint32_t k0, uint32_t k1, uint32_t c0, uint32_t c1,
                                             uint32_t &o0, uint32_t &o1)
{
    const uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ 0x1BD11BDAu};
    const int rot[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
    uint32_t x0 = c0 + ks[0], x1 = c1 + ks[1];
#pragma unroll
    for (int g = 0; g < 5; g++) {
#pragma unroll
        for (int r = 0; r < 4; r++) {
            x0 += x1;
            x1 = rng_rotl(x1, rot[g & 1][r]) ^ x0;
        }
        x0 += ks[(g + 1) % 3];
        x1 += ks[(g + 2) % 3] + (uint32_t)(g + 1);
    }
    o0 = x0;
    o1 = x1;
}

/* Stores word v at word index w of a block of nbytes (little-endian bytes, cut short where
 * the block ends); aligned: the block starts on a 4-byte boundary. */
__device__ __forceinline__ void rng_put(unsigned char *block, int64_t nbytes, int64_t w,
                                        uint32_t v, bool aligned)
{
    int64_t at = 4 * w;
    if (aligned && at + 4 <= nbytes) {
        *(uint32_t *)(block + at) = v;
        return;
    }
    for (int b = 0; b < 4 && at + b < nbytes; b++) block[at + b] = (unsigned char)(v >> (8 * b));
}

/* One thread per (key, item): item c < H hashes (c, c + H + odd) into words c and
 * c + H + odd; item H (odd word counts) hashes (H, 0) into word H. */
__global__ void rng_bits_kernel(const uint32_t *keys, int64_t nkeys, unsigned char *out,
                                int64_t nbytes)
{
    int64_t words = (nbytes + 3) / 4, half = words / 2, odd = words & 1, items = half + odd;
    bool aligned = (nbytes & 3) == 0;
    for (int64_t j = png_thread_index(); j < nkeys * items; j += png_grid_stride()) {
        int64_t i = j / items, c = j - i * items;
        uint32_t k0 = keys[2 * i], k1 = keys[2 * i + 1], o0, o1;
        unsigned char *block = out + i * nbytes;
        if (c < half) {
            rng_threefry(k0, k1, (uint32_t)c, (uint32_t)(c + half + odd), o0, o1);
            rng_put(block, nbytes, c, o0, aligned);
            rng_put(block, nbytes, c + half + odd, o1, aligned);
        } else {
            rng_threefry(k0, k1, (uint32_t)half, 0u, o0, o1);
            rng_put(block, nbytes, half, o0, aligned);
        }
    }
}

/* See random.h. */
extern "C" int pnG_random_bits(const uint32_t *keys, int64_t nkeys, void *out, int64_t nbytes,
                               int stream)
{
    int64_t words = (nbytes + 3) / 4, items = words / 2 + (words & 1);
    if (nkeys == 0 || items == 0) return 0;
    PNG_LAUNCH(rng_bits_kernel, png_blocks_for(nkeys * items, RNG_THREADS), RNG_THREADS, 0,
               png_stream(stream), keys, nkeys, (unsigned char *)out, nbytes);
    return pnG_check_launch("random_bits");
}

/* A thread per matrix; work: 2 n^2 doubles per matrix. */
__global__ void sqrt_svd_kernel(const float *a, float *out, int64_t n, int64_t nmat, double *work)
{
    for (int64_t m = png_thread_index(); m < nmat; m += png_grid_stride())
        pnK_sqrt_svd(n, a + m * n * n, out + m * n * n, work + m * 2 * n * n);
}

/* See random.h. */
extern "C" int pnG_sqrt_svd(const float *a, float *out, int64_t n, int64_t nmat, int stream)
{
    size_t bytes = sizeof(double) * 2 * (size_t)(n * n * nmat);
    if (!bytes) return 0;
    double *work = (double *)pnG_malloc(bytes, stream);
    if (!work) return -1;
    PNG_LAUNCH(sqrt_svd_kernel, png_blocks_for(nmat, 32), 32, 0, png_stream(stream), a, out, n, nmat, work);
    int rc = pnG_check_launch("sqrt_svd");
    pnG_free(work, bytes, stream);
    return rc;
}
