/* random.c — CPU kernels of the random primitives (see random.h): threefry2x32-20, the
 * RandomBits fill (bit-identical to MLX for the same key and shape), and the one-sided Jacobi
 * SVD behind multivariate_normal's matrix square root. */
#include "backend/cpu/random.h"
#include "backend/cpu/sqrt_svd.h"

#include <math.h>
#include <stdlib.h>

/* ───────────────────────────── threefry2x32 ───────────────────────────── */

/* Counters hashed side by side: the loops over lanes vectorize (8 lanes per AVX2 op). */
#define PNK_LANES 16

static inline uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

/* One round on every lane: x0 += x1; x1 = rotl(x1, R) ^ x0. */
#define PNK_ROUND(R)                                                                           \
    for (int l = 0; l < PNK_LANES; l++) {                                                      \
        x0[l] += x1[l];                                                                        \
        x1[l] = rotl32(x1[l], R) ^ x0[l];                                                      \
    }
/* Four rounds with Threefry-2x32's rotations (two sets, alternating), then key injection g. */
#define PNK_GROUP(G, RA, RB, RC, RD)                                                           \
    PNK_ROUND(RA) PNK_ROUND(RB) PNK_ROUND(RC) PNK_ROUND(RD)                                    \
    for (int l = 0; l < PNK_LANES; l++) {                                                      \
        x0[l] += ks[((G) + 1) % 3];                                                            \
        x1[l] += ks[((G) + 2) % 3] + (uint32_t)((G) + 1);                                      \
    }

/* Threefry-2x32-20 of the counters (c0[l], c1[l]) under key (k0, k1), for all lanes. */
static inline void threefry_lanes(uint32_t k0, uint32_t k1, const uint32_t *c0, const uint32_t *c1,
                                  uint32_t *restrict o0, uint32_t *restrict o1)
{
    const uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ 0x1BD11BDAu}; /* key schedule with parity */
    uint32_t x0[PNK_LANES], x1[PNK_LANES];
    for (int l = 0; l < PNK_LANES; l++) {
        x0[l] = c0[l] + ks[0];
        x1[l] = c1[l] + ks[1];
    }
    PNK_GROUP(0, 13, 15, 26, 6)
    PNK_GROUP(1, 17, 29, 16, 24)
    PNK_GROUP(2, 13, 15, 26, 6)
    PNK_GROUP(3, 17, 29, 16, 24)
    PNK_GROUP(4, 13, 15, 26, 6)
    memcpy(o0, x0, sizeof x0);
    memcpy(o1, x1, sizeof x1);
}

void pnK_threefry2x32(uint32_t k0, uint32_t k1, uint32_t c0, uint32_t c1, uint32_t out[2])
{
    uint32_t a[PNK_LANES] = {c0}, b[PNK_LANES] = {c1}, o0[PNK_LANES], o1[PNK_LANES];
    threefry_lanes(k0, k1, a, b, o0, o1);
    out[0] = o0[0];
    out[1] = o1[0];
}

/* ───────────────────────────── random bits ───────────────────────────── */

/* Stores word v at word index w of a block of nbytes, cut short where the block ends. */
static inline void put_word(unsigned char *block, size_t nbytes, size_t w, uint32_t v)
{
    size_t at = 4 * w;
    if (at + 4 <= nbytes) memcpy(block + at, &v, 4);
    else memcpy(block + at, &v, nbytes - at);
}

/* Work item q of a block of nbytes: with H pairs and M = ceil(H / PNK_LANES), items q < M
 * hash the counters c = q·PNK_LANES ... (up to H) into words c and c + H + odd; item M (odd
 * word counts only) hashes (H, 0) into the middle word H. */
static void block_item(uint32_t k0, uint32_t k1, unsigned char *block, size_t nbytes, size_t q)
{
    size_t words = (nbytes + 3) / 4, half = words / 2, odd = words & 1;
    size_t c = q * PNK_LANES;
    if (c >= half) { /* the middle word of an odd count */
        uint32_t h[2];
        pnK_threefry2x32(k0, k1, (uint32_t)half, 0, h);
        put_word(block, nbytes, half, h[0]);
        return;
    }
    uint32_t c0[PNK_LANES], c1[PNK_LANES], o0[PNK_LANES], o1[PNK_LANES];
    for (int l = 0; l < PNK_LANES; l++) {
        c0[l] = (uint32_t)(c + l);
        c1[l] = (uint32_t)(c + l + half + odd);
    }
    threefry_lanes(k0, k1, c0, c1, o0, o1);
    size_t m = half - c < PNK_LANES ? half - c : PNK_LANES;
    for (size_t l = 0; l < m; l++) {
        put_word(block, nbytes, c + l, o0[l]);
        put_word(block, nbytes, c + l + half + odd, o1[l]);
    }
}

/* Work items of a block of nbytes (see block_item). */
static size_t block_items(size_t nbytes)
{
    size_t words = (nbytes + 3) / 4, half = words / 2;
    return (half + PNK_LANES - 1) / PNK_LANES + (words & 1);
}

void pnK_random_block(uint32_t k0, uint32_t k1, void *dst, size_t nbytes)
{
    for (size_t q = 0, n = block_items(nbytes); q < n; q++) block_item(k0, k1, dst, nbytes, q);
}

/* Element offset of the flat (row-major) index i of a (any strides). */
static inline int64_t key_loc(const pn_array *a, int64_t i)
{
    int64_t loc = 0;
    for (int d = a->ndim - 1; d >= 0; d--) {
        loc += (i % a->shape[d]) * a->strides[d];
        i /= a->shape[d];
    }
    return loc;
}

int pnK_random_bits_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_array *o = out[0];
    if (pnC_alloc_output(o) < 0) return -1;
    const pn_array *keys = in[0];
    int64_t nkeys = keys->size / 2;
    if (o->size == 0 || nkeys == 0) return 0;
    const uint32_t *kp = pnC_data(keys);
    unsigned char *base = pnC_data(o);
    size_t nbytes = (size_t)(o->size / nkeys) * pn_dtype_size(o->dtype);
    int64_t items = (int64_t)block_items(nbytes), total = nkeys * items;
    /* An item hashes PNK_LANES counter pairs: about 128 bytes of output. */
#pragma omp parallel for if (total * 128 > PNC_PAR_GRAIN)
    for (int64_t j = 0; j < total; j++) {
        int64_t i = j / items;
        block_item(kp[key_loc(keys, 2 * i)], kp[key_loc(keys, 2 * i + 1)],
                   base + (size_t)i * nbytes, nbytes, (size_t)(j - i * items));
    }
    return 0;
}

/* ───────────────────────────── matrix square root ───────────────────────────── */

int pnK_sqrt_svd_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    pn_array *o = out[0];
    if (pnC_alloc_output(o) < 0) return -1;
    if (o->size == 0) return 0;
    const pn_array *a = in[0];
    int64_t n = o->shape[o->ndim - 1], nmat = o->size / (n * n);
    float *copy = NULL;
    if (!pnC_row_contiguous(a)) {
        copy = malloc(sizeof(float) * (size_t)o->size);
        if (!copy) {
            pnC_fail(PN_ERR_OUT_OF_MEMORY, "[multivariate_normal] Out of memory.");
            return -1;
        }
        pnC_copy_to_contiguous(a, copy);
    }
    const float *src = copy ? copy : pnC_data(a);
    float *dst = pnC_data(o);
    int failed = 0;
#pragma omp parallel if (nmat > 1 && n * n * n * nmat > PNC_PAR_GRAIN)
    {
        double *work = malloc(sizeof(double) * 2 * (size_t)(n * n));
        if (!work) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for
        for (int64_t m = 0; m < nmat; m++) {
            if (work) pnK_sqrt_svd(n, src + m * n * n, dst + m * n * n, work);
        }
        free(work);
    }
    free(copy);
    if (failed) {
        pnC_fail(PN_ERR_OUT_OF_MEMORY, "[multivariate_normal] Out of memory for a %lldx%lld "
                 "work matrix.", (long long)n, (long long)n);
        return -1;
    }
    return 0;
}
