/* random.h — CPU kernels of the random primitives: the threefry2x32-20 counter hash, the
 * RandomBits fill laid out exactly as MLX lays its counters over an output, and the matrix
 * square root U·sqrt(S)·Vᵀ that multivariate_normal scales its samples with. */
#ifndef PONTE_BACKEND_CPU_RANDOM_H
#define PONTE_BACKEND_CPU_RANDOM_H

#include "core/core.h"

/* Threefry-2x32 with 20 rounds (Salmon et al. 2011, as Random123, JAX and MLX): hashes the
 * counter (c0, c1) under the key (k0, k1) into out[0], out[1]. */
void pnK_threefry2x32(uint32_t k0, uint32_t k1, uint32_t c0, uint32_t c1, uint32_t out[2]);

/* Fills nbytes of dst with the random bits of one key, as MLX's RandomBits does for the
 * block of one key: with W = ceil(nbytes / 4) words, H = W / 2 and odd = W % 2, word c and
 * word c + H + odd are the two halves of hash(key, (c, c + H + odd)) for c < H, and when W is
 * odd word H is the first half of hash(key, (H, 0)); the bytes of the last word past nbytes
 * are dropped. Words are stored in the machine's byte order. Single-threaded. */
void pnK_random_block(uint32_t k0, uint32_t k1, void *dst, size_t nbytes);

/* Eval of the RandomBits primitive: in[0] holds keys of shape (K..., 2) (uint32, any
 * strides), out[0] (shape (K..., M...), uint8/16/32) gets one block per key. Threaded. */
int pnK_random_bits_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

/* Eval of the matrix square root used by multivariate_normal: in[0] is float32 of shape
 * (..., n, n); out[0] (same shape, float32) gets U·sqrt(S)·Vᵀ per matrix, where U·S·Vᵀ is the
 * SVD (for a symmetric positive semi-definite matrix: its unique PSD square root). Computed by
 * one-sided Jacobi in float64. Threaded over the batch. */
int pnK_sqrt_svd_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out);

#endif /* PONTE_BACKEND_CPU_RANDOM_H */
