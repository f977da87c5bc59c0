/* gguf.c — .gguf reading and writing (ggml's format, version 3; 2 is read too): "GGUF", the
 * version, tensor and metadata counts, metadata key/value pairs, tensor infos (name, extents
 * fastest-first, ggml type, offset), then the aligned data. The reader treats the file as
 * hostile: every count, length, extent and offset is checked against the bytes left before it
 * is used. Q4_0, Q4_1 and Q8_0 tensors load as MLX's affine quantized format (w packed uint32,
 * "prefix.scales" and "prefix.biases" in float16, groups of 32); the other block types in
 * BLOCK_TYPES (Q5_0, Q5_1, the k-quants Q2_K..Q8_K, the i-quants IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, IQ4_NL, IQ4_XS, the ternary TQ1_0/TQ2_0, and MXFP4, NVFP4) are
 * dequantized to float16, each value the float16 rounding of its float32 decoding (for the IQ2,
 * IQ3, IQ1, TQ and FP4 types computed in the order gguf-py's dequantizer uses, so that the two
 * agree bit for bit, non-finite scales included); MLX 0.32, through
 * gguflib, does so for Q2_K, Q4_K and Q6_K and refuses the others. The IQ types' lookup grids
 * are ggml's, in gguf_grids.c (generated). Q8_1 and Q1_0, which gguf-py does not dequantize,
 * and the removed repacked types are refused by name. */
#include "io/io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ───────────────────────────── metadata maps ───────────────────────────── */

typedef struct {
    char *key;
    pn_array *array; /* an array value (owned reference), or NULL for strings */
    char **strs;     /* string value(s) */
    int64_t nstrs;
    bool is_list; /* a list of strings (also when it holds one) */
} meta_entry;

struct pn_gguf_meta {
    meta_entry *e;
    int n, cap;
};

pn_gguf_meta *pn_gguf_meta_new(void)
{
    pn_gguf_meta *m = calloc(1, sizeof *m);
    if (!m) pn_set_error(PN_ERR_OUT_OF_MEMORY, "[gguf] Out of memory.");
    return m;
}

static void entry_clear(meta_entry *e)
{
    free(e->key);
    if (e->array) pn_release(e->array);
    for (int64_t j = 0; j < e->nstrs; j++) free(e->strs[j]);
    free(e->strs);
    memset(e, 0, sizeof *e);
}

void pn_gguf_meta_free(pn_gguf_meta *m)
{
    if (!m) return;
    for (int i = 0; i < m->n; i++) entry_clear(&m->e[i]);
    free(m->e);
    free(m);
}

int pn_gguf_meta_count(const pn_gguf_meta *m) { return m ? m->n : 0; }

const char *pn_gguf_meta_key(const pn_gguf_meta *m, int i)
{
    return m && i >= 0 && i < m->n ? m->e[i].key : NULL;
}

pn_array *pn_gguf_meta_array(const pn_gguf_meta *m, int i)
{
    return m && i >= 0 && i < m->n ? m->e[i].array : NULL;
}

int64_t pn_gguf_meta_strings(const pn_gguf_meta *m, int i, const char *const **strs, bool *is_list)
{
    if (!m || i < 0 || i >= m->n || m->e[i].array) return -1;
    if (strs) *strs = (const char *const *)m->e[i].strs;
    if (is_list) *is_list = m->e[i].is_list;
    return m->e[i].nstrs;
}

/* A new entry for key (replacing an existing one), or NULL with an error. */
static meta_entry *meta_slot(pn_gguf_meta *m, const char *key)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->e[i].key, key)) {
            entry_clear(&m->e[i]);
            if (!(m->e[i].key = strdup(key))) break;
            return &m->e[i];
        }
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 16;
        meta_entry *e = realloc(m->e, (size_t)cap * sizeof *e);
        if (!e) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[gguf] Out of memory.");
        m->e = e, m->cap = cap;
    }
    meta_entry *e = &m->e[m->n];
    memset(e, 0, sizeof *e);
    if (!(e->key = strdup(key))) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[gguf] Out of memory.");
    m->n++;
    return e;
}

int pn_gguf_meta_set_array(pn_gguf_meta *m, const char *key, pn_array *a)
{
    if (!m || !key || !a) return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[gguf] NULL metadata argument.");
    meta_entry *e = meta_slot(m, key);
    if (!e) return -1;
    e->array = pn_retain(a); /* a reference of the map's own, released in entry_clear */
    return 0;
}

int pn_gguf_meta_set_strings(pn_gguf_meta *m, const char *key, const char *const *strs,
                             int64_t n, bool is_list)
{
    if (!m || !key || n < 0 || (n && !strs) || (!is_list && n != 1))
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[gguf] Bad string metadata for %s.",
                            key ? key : "(null)");
    meta_entry *e = meta_slot(m, key);
    if (!e) return -1;
    e->is_list = is_list;
    e->strs = calloc((size_t)n + 1, sizeof *e->strs);
    if (!e->strs) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[gguf] Out of memory.");
    for (int64_t j = 0; j < n; j++) {
        if (!strs[j] || !(e->strs[j] = strdup(strs[j])))
            return pn_set_error(strs[j] ? PN_ERR_OUT_OF_MEMORY : PN_ERR_INVALID_ARGUMENT,
                                "[gguf] Bad string in metadata %s.", key);
        e->nstrs = j + 1;
    }
    return 0;
}

/* ───────────────────────────── types ───────────────────────────── */

enum { V_U8, V_I8, V_U16, V_I16, V_U32, V_I32, V_F32, V_BOOL, V_STRING, V_ARRAY, V_U64, V_I64, V_F64 };

/* Metadata value types that are numbers, with their dtype (-1: not a number). */
static const int VALUE_DTYPE[] = {PN_UINT8, PN_INT8,  PN_UINT16, PN_INT16, PN_UINT32,
                                  PN_INT32, PN_FLOAT32, PN_BOOL, -1,       -1,
                                  PN_UINT64, PN_INT64, PN_FLOAT64};
#define NVALUE_TYPES 13

/* ggml tensor types Ponte reads and writes, and the names of the quantized ones it refuses. */
static const struct {
    int ggml;
    pn_dtype dtype;
} TENSOR_TYPES[] = {{0, PN_FLOAT32}, {1, PN_FLOAT16}, {24, PN_INT8},   {25, PN_INT16},
                    {26, PN_INT32},  {27, PN_INT64},  {28, PN_FLOAT64}, {30, PN_BFLOAT16}};
#define NTENSOR_TYPES (int)(sizeof TENSOR_TYPES / sizeof TENSOR_TYPES[0])

/* ── ggml block decoders: one block of values at blk into y (float), per ggml's layouts ── */

static float h2f(const unsigned char *p)
{
    pn_float16 h;
    memcpy(&h.bits, p, 2);
    return pnC_f16_to_f32(h);
}

/* Q5_0: f16 d, 32 high bits qh (u32), 16 bytes of low nibbles; x = d (q - 16). Q5_1: f16 d,
 * f16 m, qh, nibbles; x = d q + m. Value i < 16 takes the low nibble of byte i and bit i of qh,
 * value i + 16 the high nibble and bit i + 16. */
static void q5_01(const unsigned char *blk, float *y, bool has_min)
{
    const float d = h2f(blk), m = has_min ? h2f(blk + 2) : 0;
    const int shift = has_min ? 0 : 16; /* Q5_0: d (q - 16), rounded as gguf-py rounds it */
    const unsigned char *hq = blk + (has_min ? 4 : 2), *qs = hq + 4;
    uint32_t qh;
    memcpy(&qh, hq, 4);
    for (int j = 0; j < 32; j++) { /* Q5_0 adds no m: d (q - 16) keeps its zero's sign */
        int q = (j < 16 ? qs[j] & 15 : qs[j - 16] >> 4) | (int)((qh >> j) & 1) << 4;
        float v = d * (float)(q - shift);
        y[j] = has_min ? v + m : v;
    }
}
static void dec_q5_0(const unsigned char *blk, float *y) { q5_01(blk, y, false); }
static void dec_q5_1(const unsigned char *blk, float *y) { q5_01(blk, y, true); }

/* Q8_K: f32 d, 256 int8, 16 int16 sums (unused); x = d q. */
static void dec_q8_k(const unsigned char *blk, float *y)
{
    float d;
    memcpy(&d, blk, 4);
    for (int j = 0; j < 256; j++) y[j] = d * (float)(int8_t)blk[4 + j];
}

/* Q2_K: 16 bytes of 4-bit (scale, min) pairs, 64 bytes of 2-bit values, f16 d, f16 dmin. The
 * 256 values come in two halves of 128 over 32 bytes each; within a half, shift s = 0, 2, 4, 6
 * takes 2 bits from bytes 0..15 (one sub-block of 16) then 16..31 (the next);
 * x = d (sc & 15) q - dmin (sc >> 4). */
static void dec_q2_k(const unsigned char *blk, float *y)
{
    const unsigned char *sc = blk, *q = blk + 16;
    const float d = h2f(blk + 80), dmin = h2f(blk + 82);
    int is = 0;
    for (int half = 0; half < 2; half++, q += 32)
        for (int shift = 0; shift < 8; shift += 2)
            for (int part = 0; part < 2; part++, is++) {
                const float dl = d * (float)(sc[is] & 15), ml = dmin * (float)(sc[is] >> 4);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((q[part * 16 + l] >> shift) & 3) - ml;
            }
}

/* Q3_K: 32 bytes hmask (the third bit), 64 bytes of 2-bit values, 12 bytes of 16 6-bit scales
 * (low 4 bits in bytes 0..7, nibbles; high 2 bits in bytes 8..11), f16 d. Same walk as Q2_K; the
 * value is q - 4 when its hmask bit (bit b of hmask[l], b counting the 8 (half, shift) steps) is
 * clear; x = d (scale - 32) value. */
static void dec_q3_k(const unsigned char *blk, float *y)
{
    const unsigned char *hm = blk, *q = blk + 32, *s = blk + 96;
    const float d = h2f(blk + 108);
    int sc[16];
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
        int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (lo | hi << 4) - 32;
    }
    int is = 0, bit = 0;
    for (int half = 0; half < 2; half++, q += 32)
        for (int shift = 0; shift < 8; shift += 2, bit++)
            for (int part = 0; part < 2; part++, is++) {
                const float dl = d * (float)sc[is];
                for (int l = 0; l < 16; l++) {
                    int k = part * 16 + l;
                    int v = ((q[k] >> shift) & 3) - ((hm[k] >> bit) & 1 ? 0 : 4);
                    *y++ = dl * (float)v;
                }
            }
}

/* The 6-bit (scale, min) pair j of the 12 packed bytes of Q4_K / Q5_K. */
static void scale_min_k4(int j, const unsigned char *q, int *sc, int *mn)
{
    if (j < 4) {
        *sc = q[j] & 63, *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | (q[j - 4] >> 6) << 4;
        *mn = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

/* Q4_K: f16 d, f16 dmin, 12 bytes of 8 (scale, min) pairs, 128 bytes of nibbles. Q5_K: the
 * same then 32 bytes qh (the fifth bits) before the nibbles. Each 32 bytes of nibbles hold two
 * sub-blocks of 32 (low nibbles, then high); sub-block j takes bit j of qh[l];
 * x = d sc q - dmin mn. */
static void q45_k(const unsigned char *blk, float *y, bool five)
{
    const float d = h2f(blk), dmin = h2f(blk + 2);
    const unsigned char *s = blk + 4, *qh = blk + 16, *q = blk + (five ? 48 : 16);
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        scale_min_k4(j, s, &sc, &mn);
        const float dl = d * (float)sc, ml = dmin * (float)mn;
        const unsigned char *qq = q + 32 * (j / 2);
        for (int l = 0; l < 32; l++) {
            int v = (j % 2 ? qq[l] >> 4 : qq[l] & 15) + (five ? ((qh[l] >> j) & 1) << 4 : 0);
            *y++ = dl * (float)v - ml;
        }
    }
}
static void dec_q4_k(const unsigned char *blk, float *y) { q45_k(blk, y, false); }
static void dec_q5_k(const unsigned char *blk, float *y) { q45_k(blk, y, true); }

/* Q6_K: 128 bytes of low nibbles ql, 64 bytes of high 2-bit pairs qh, 16 int8 scales, f16 d.
 * Each half of 128 values uses 64 bytes of ql and 32 of qh: value l + 32 k (k = 0..3) takes
 * the low (k < 2) or high (k >= 2) nibble of ql[l + 32 (k % 2)] and bits 2k, 2k+1 of qh[l];
 * x = d scale[l / 16 + 2 k] (q - 32). */
static void dec_q6_k(const unsigned char *blk, float *y)
{
    const unsigned char *ql = blk, *qh = blk + 128;
    const int8_t *sc = (const int8_t *)(blk + 192);
    const float d = h2f(blk + 208);
    for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                int lo = k < 2 ? ql[l + 32 * k] & 15 : ql[l + 32 * (k - 2)] >> 4;
                int v = (lo | ((qh[l] >> (2 * k)) & 3) << 4) - 32;
                y[l + 32 * k] = d * (float)sc[l / 16 + 2 * k] * (float)v;
            }
}

static uint32_t le16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const unsigned char *p) { return le16(p) | le16(p + 2) << 16; }

/* ggml's non-linear 4-bit grid of IQ4_NL / IQ4_XS, and the e2m1 values (doubled) of MXFP4 /
 * NVFP4. */
static const int8_t IQ4_GRID[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};
static const int8_t E2M1[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* 2n values of 4-bit codes into a table: y[j] = d tab[low nibble of qs[j]], y[j + n] = d
 * tab[high nibble of qs[j]], j < n. */
static void nibble_pairs(float *y, float d, const unsigned char *qs, int n, const int8_t *tab)
{
    for (int j = 0; j < n; j++) {
        y[j] = d * (float)tab[qs[j] & 15];
        y[j + n] = d * (float)tab[qs[j] >> 4];
    }
}

/* IQ4_NL: f16 d, 16 bytes of nibbles (low: values 0..15, high: 16..31); x = d grid[q]. */
static void dec_iq4_nl(const unsigned char *blk, float *y)
{
    nibble_pairs(y, h2f(blk), blk + 2, 16, IQ4_GRID);
}

/* IQ4_XS: f16 d, u16 scales_h, 4 bytes scales_l, 128 bytes of nibbles: 8 sub-blocks of 32 laid
 * out as IQ4_NL's, sub-block b scaled by d (ls - 32), ls = nibble b of scales_l | 2 bits b of
 * scales_h << 4. */
static void dec_iq4_xs(const unsigned char *blk, float *y)
{
    const float d = h2f(blk);
    const uint32_t sh = le16(blk + 2);
    for (int b = 0; b < 8; b++) {
        int ls = ((blk[4 + b / 2] >> (4 * (b % 2))) & 15) | ((sh >> (2 * b)) & 3) << 4;
        nibble_pairs(y + 32 * b, d * (float)(ls - 32), blk + 8 + 16 * b, 16, IQ4_GRID);
    }
}

/* MXFP4 (OCP microscaling): an e8m0 exponent e, 16 bytes of e2m1 nibbles laid out as IQ4_NL's;
 * x = 2^(e - 128) E2M1[q] (ggml's halved scale, float32 subnormal for e < 2, 2^127 at most). */
static void dec_mxfp4(const unsigned char *blk, float *y)
{
    const uint32_t e = blk[0];
    nibble_pairs(y, pnC_bits_f32(e < 2 ? 0x00200000u << e : (e - 1) << 23), blk + 1, 16, E2M1);
}

/* NVFP4: 4 unsigned e4m3 scales (bias 7; bit 7 ignored, but bytes 0 and 0x7f read as 0), then
 * 4 sub-blocks of 16 values over 8 bytes each, laid out as IQ4_NL's; x = (s / 2) E2M1[q]. */
static void dec_nvfp4(const unsigned char *blk, float *y)
{
    for (int s = 0; s < 4; s++) {
        const int x = blk[s], e = (x >> 3) & 15, m = x & 7;
        const float d = x == 0 || x == 0x7f ? 0.0f
                        : e ? ldexpf(1.0f + (float)m / 8, e - 8)
                            : ldexpf((float)m, -10);
        nibble_pairs(y + 16 * s, d, blk + 4 + 8 * s, 8, E2M1);
    }
}

/* TQ1_0 / TQ2_0 (ternary): x = d (t - 1), t in 0..2. TQ1_0: 48 bytes of five base-3 digits
 * each (a byte b holds ceil(256 v / 243); digit k is ((uint8)(b 3^k) 3) >> 8), 4 bytes of four,
 * f16 d. Bytes 0..31 give values 32 k + j, bytes 32..47 160 + 16 k + j, the last four 240 +
 * 4 k + j. TQ2_0: 64 bytes of 2-bit t, f16 d; bits 2k of byte 32 h + j give value 128 h +
 * 32 k + j. */
static void trits(float *y, float d, const unsigned char *q, int n, int ndigits)
{
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    for (int k = 0; k < ndigits; k++)
        for (int j = 0; j < n; j++)
            y[k * n + j] = d * (float)(((uint8_t)(q[j] * pow3[k]) * 3 >> 8) - 1);
}
static void dec_tq1_0(const unsigned char *blk, float *y)
{
    const float d = h2f(blk + 52);
    trits(y, d, blk, 32, 5);
    trits(y + 160, d, blk + 32, 16, 5);
    trits(y + 240, d, blk + 48, 4, 4);
}
static void dec_tq2_0(const unsigned char *blk, float *y)
{
    const float d = h2f(blk + 64);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < 32; j++)
                *y++ = d * (float)(((blk[32 * h + j] >> (2 * k)) & 3) - 1);
}

/* The IQ2/IQ3 types decode groups of 8 values: y[j] = db g_j (negated where bit j of signs is
 * set), g_j byte j of a grid word (or of two 4-value words, the second in the high half). */
static void signed8(float *y, float db, uint64_t g, unsigned signs)
{
    for (int j = 0; j < 8; j++)
        y[j] = db * (float)(uint8_t)(g >> 8 * j) * ((signs >> j) & 1 ? -1.0f : 1.0f);
}

/* IQ2_XXS: f16 d, then per 32 values 4 bytes of grid indices (8 values each) and a u32 aux;
 * IQ3_XXS: f16 d, 64 bytes of grid indices (4 values each), then a u32 aux per 32 values.
 * Group l of a 32 takes signs ksigns[bits 7l..7l+6 of aux]; x = d (0.5 + (aux >> 28)) grid
 * (+-) / 4 (IQ2) or / 2 (IQ3). */
static void iq_xxs(const unsigned char *blk, float *y, bool three)
{
    const float d = h2f(blk);
    for (int ib = 0; ib < 8; ib++) {
        const unsigned char *q = blk + 2 + 8 * ib;
        const uint32_t aux = le32(three ? blk + 66 + 4 * ib : q + 4);
        const float db = d * (0.5f + (float)(aux >> 28)) * (three ? 0.5f : 0.25f);
        for (int l = 0; l < 4; l++) {
            uint64_t g = three ? pnI_iq3xxs_grid[q[2 * l]] |
                                     (uint64_t)pnI_iq3xxs_grid[q[2 * l + 1]] << 32
                               : pnI_iq2xxs_grid[q[l]];
            signed8(y + 32 * ib + 8 * l, db, g, pnI_iq2_ksigns[(aux >> (7 * l)) & 127]);
        }
    }
}
static void dec_iq2_xxs(const unsigned char *blk, float *y) { iq_xxs(blk, y, false); }
static void dec_iq3_xxs(const unsigned char *blk, float *y) { iq_xxs(blk, y, true); }

/* The IQ2_XS / IQ2_S scale of group g (8 values) from their 8 bytes of 4-bit scales (one per
 * 16 values): d (0.5 + ls) / 4. */
static float iq2_scale(float d, const unsigned char *scales, int g)
{
    return d * (0.5f + (float)((scales[g / 4] >> (4 * (g / 2 % 2))) & 15)) * 0.25f;
}

/* IQ2_XS: f16 d, a u16 per group of 8 (grid index: low 9 bits, ksigns index: high 7), scales. */
static void dec_iq2_xs(const unsigned char *blk, float *y)
{
    const float d = h2f(blk);
    for (int g = 0; g < 32; g++) {
        const uint32_t w = le16(blk + 2 + 2 * g);
        signed8(y + 8 * g, iq2_scale(d, blk + 66, g), pnI_iq2xs_grid[w & 511],
                pnI_iq2_ksigns[w >> 9]);
    }
}

/* IQ2_S: f16 d, 32 bytes of grid index low bits, 32 sign bytes, 8 bytes of 2-bit high index
 * bits (bits 2(g % 4) of byte g / 4), scales; a group of 8 per index and sign byte. */
static void dec_iq2_s(const unsigned char *blk, float *y)
{
    const float d = h2f(blk);
    for (int g = 0; g < 32; g++) {
        const uint32_t idx = blk[2 + g] | ((blk[66 + g / 4] >> (2 * (g % 4))) & 3u) << 8;
        signed8(y + 8 * g, iq2_scale(d, blk + 74, g), pnI_iq2s_grid[idx], blk[34 + g]);
    }
}

/* IQ3_S: f16 d, 64 bytes of grid index low bits (4 values each), 8 bytes of ninth bits (bit
 * e % 8 of byte e / 8 for index e), 32 sign bytes (one per 8 values), 4 bytes of 4-bit scales s
 * (one per 32 values); x = d (1 + 2 s) grid (+-). */
static void dec_iq3_s(const unsigned char *blk, float *y)
{
    const float d = h2f(blk);
    for (int g = 0; g < 32; g++) {
        uint64_t w[2];
        for (int h = 0; h < 2; h++) {
            const int e = 2 * g + h;
            w[h] = pnI_iq3s_grid[blk[2 + e] | ((blk[66 + e / 8] >> (e % 8)) & 1u) << 8];
        }
        const int s = (blk[106 + g / 8] >> (4 * (g / 4 % 2))) & 15;
        signed8(y + 8 * g, d * (float)(1 + 2 * s), w[0] | w[1] << 32, blk[74 + g]);
    }
}

/* The IQ1 types decode groups of 8: y[j] = dl (g_j + delta), g_j the int8 byte j (-1, 0, 1) of
 * IQ1 grid entry idx (11 bits), delta = +-1/8. */
static void iq1_group(float *y, float dl, float delta, uint32_t idx)
{
    const uint64_t g = pnI_iq1s_grid[idx];
    for (int j = 0; j < 8; j++) y[j] = dl * ((float)(int8_t)(uint8_t)(g >> 8 * j) + delta);
}

/* IQ1_S: f16 d, 32 bytes of index low bits (one per group), a u16 qh per 32 values: bits 3l..3l+2
 * the high index bits of its group l, bits 12..14 the scale s, bit 15 delta's sign;
 * dl = d (2 s + 1). */
static void dec_iq1_s(const unsigned char *blk, float *y)
{
    const float d = h2f(blk);
    for (int ib = 0; ib < 8; ib++) {
        const uint32_t h = le16(blk + 34 + 2 * ib);
        const float dl = d * (float)(2 * ((h >> 12) & 7) + 1);
        const float delta = h & 0x8000 ? -0.125f : 0.125f;
        for (int l = 0; l < 4; l++)
            iq1_group(y + 32 * ib + 8 * l, dl, delta,
                      blk[2 + 4 * ib + l] | ((h >> (3 * l)) & 7) << 8);
    }
}

/* IQ1_M: 32 bytes of index low bits, 16 bytes of nibbles (group g: nibble g; bits 0..2 the high
 * index bits, bit 3 delta's sign), 4 u16 whose top nibbles make the f16 d and whose low 12 bits
 * hold 3-bit scales s, one per 16 values (scale k: bits 3(k % 4) of word k / 4);
 * dl = d (2 s + 1). */
static void dec_iq1_m(const unsigned char *blk, float *y)
{
    uint32_t sc[4];
    for (int i = 0; i < 4; i++) sc[i] = le16(blk + 48 + 2 * i);
    const uint32_t dbits =
        sc[0] >> 12 | (sc[1] >> 8 & 0xf0) | (sc[2] >> 4 & 0xf00) | (sc[3] & 0xf000);
    const unsigned char db[2] = {(unsigned char)dbits, (unsigned char)(dbits >> 8)};
    const float d = h2f(db);
    for (int g = 0; g < 32; g++) {
        const int k = g / 2;
        const uint32_t nib = (blk[32 + g / 2] >> (4 * (g % 2))) & 15;
        iq1_group(y + 8 * g, d * (float)(2 * ((sc[k / 4] >> (3 * (k % 4))) & 7) + 1),
                  nib & 8 ? -0.125f : 0.125f, blk[g] | (nib & 7) << 8);
    }
}

/* The ggml block types read: values and bytes per block; bits > 0: repacked into MLX's affine
 * format (Q4_0: f16 d, 16 bytes of nibbles (low: values 0..15, high: 16..31), x = d (q - 8);
 * Q4_1: f16 d, f16 m, nibbles, x = d q + m; Q8_0: f16 d, 32 int8, x = d q, stored as q + 128
 * with bias -128 d); bits == 0: decode dequantizes each block, loaded as float16. */
static const struct {
    int ggml, values, bytes, bits;
    void (*decode)(const unsigned char *blk, float *y);
} BLOCK_TYPES[] = {
    {2, 32, 18, 4, NULL},          {3, 32, 20, 4, NULL},          {8, 32, 34, 8, NULL},
    {6, 32, 22, 0, dec_q5_0},      {7, 32, 24, 0, dec_q5_1},
    {10, 256, 84, 0, dec_q2_k},    {11, 256, 110, 0, dec_q3_k},   {12, 256, 144, 0, dec_q4_k},
    {13, 256, 176, 0, dec_q5_k},   {14, 256, 210, 0, dec_q6_k},   {15, 256, 292, 0, dec_q8_k},
    {20, 32, 18, 0, dec_iq4_nl},   {23, 256, 136, 0, dec_iq4_xs},
    {16, 256, 66, 0, dec_iq2_xxs}, {17, 256, 74, 0, dec_iq2_xs},  {22, 256, 82, 0, dec_iq2_s},
    {18, 256, 98, 0, dec_iq3_xxs}, {21, 256, 110, 0, dec_iq3_s},  {19, 256, 50, 0, dec_iq1_s},
    {29, 256, 56, 0, dec_iq1_m},   {34, 256, 54, 0, dec_tq1_0},   {35, 256, 66, 0, dec_tq2_0},
    {39, 32, 17, 0, dec_mxfp4},    {40, 64, 36, 0, dec_nvfp4},
};
#define NBLOCK_TYPES (int)(sizeof BLOCK_TYPES / sizeof BLOCK_TYPES[0])

static const char *ggml_type_name(uint32_t t)
{
    static const char *names[] = {"F32",  "F16",  "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0",
                                  "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                                  "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
                                  "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32",
                                  "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8",
                                  "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8",
                                  "IQ4_NL_8_8", "MXFP4", "NVFP4", "Q1_0"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* ───────────────────────────── reading ───────────────────────────── */

typedef struct {
    const unsigned char *p, *end;
    const char *path;
} cursor;

static int need(cursor *c, uint64_t n, const char *what)
{
    if ((uint64_t)(c->end - c->p) < n)
        return pn_set_error(PN_ERR_IO, "[load_gguf] %s: %s extends past the end of the file "
                            "(a truncated or corrupt file).", c->path, what);
    return 0;
}

static int rd(cursor *c, void *dst, size_t n, const char *what)
{
    if (need(c, n, what)) return -1;
    memcpy(dst, c->p, n);
    c->p += n;
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) { return rd(c, v, 4, what); }
static int rd_u64(cursor *c, uint64_t *v, const char *what) { return rd(c, v, 8, what); }

/* A length-prefixed string, newly malloc'd and NUL-terminated (NULL with an error). */
static char *rd_string(cursor *c, const char *what)
{
    uint64_t n;
    if (rd_u64(c, &n, what) || need(c, n, what)) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[load_gguf] Out of memory.");
    memcpy(s, c->p, (size_t)n);
    s[n] = 0;
    c->p += n;
    return s;
}

static size_t value_size(uint32_t t) { return VALUE_DTYPE[t] < 0 ? 0 : pn_dtype_size((pn_dtype)VALUE_DTYPE[t]); }

/* Reads one metadata value of type t into m under key (NULL m: skip it). */
static int rd_value(cursor *c, uint32_t t, pn_gguf_meta *m, const char *key, uint32_t *alignment)
{
    if (t >= NVALUE_TYPES)
        return pn_set_error(PN_ERR_IO, "[load_gguf] %s: metadata %s has an unknown value type %u.",
                            c->path, key, t);
    if (t == V_STRING) {
        char *s = rd_string(c, "a metadata string");
        if (!s) return -1;
        int rc = pn_gguf_meta_set_strings(m, key, (const char *const *)&s, 1, false);
        free(s);
        return rc;
    }
    if (t != V_ARRAY) {
        size_t es = value_size(t);
        unsigned char buf[8];
        if (rd(c, buf, es, "a metadata value")) return -1;
        if (!strcmp(key, "general.alignment") && t == V_U32) memcpy(alignment, buf, 4);
        int64_t none[1] = {0};
        pn_array *a = pn_array_from_data(buf, none, 0, (pn_dtype)VALUE_DTYPE[t]);
        int rc = a ? pn_gguf_meta_set_array(m, key, a) : -1;
        pn_release(a);
        return rc;
    }
    uint32_t et;
    uint64_t n;
    if (rd_u32(c, &et, "a metadata array type") || rd_u64(c, &n, "a metadata array length")) return -1;
    if (et >= NVALUE_TYPES || et == V_ARRAY)
        return pn_set_error(PN_ERR_IO, "[load_gguf] %s: metadata %s is an array of an unsupported "
                            "type %u.", c->path, key, et);
    if (et == V_STRING) {
        /* each string takes at least its 8-byte length */
        if (need(c, n > UINT64_MAX / 8 ? UINT64_MAX : n * 8, "a metadata string array")) return -1;
        char **s = calloc((size_t)n + 1, sizeof *s);
        if (!s) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[load_gguf] Out of memory.");
        int rc = 0;
        for (uint64_t j = 0; j < n && rc == 0; j++)
            if (!(s[j] = rd_string(c, "a metadata string"))) rc = -1;
        if (rc == 0) rc = pn_gguf_meta_set_strings(m, key, (const char *const *)s, (int64_t)n, true);
        for (uint64_t j = 0; j < n; j++) free(s[j]);
        free(s);
        return rc;
    }
    size_t es = value_size(et);
    if (need(c, n > UINT64_MAX / es ? UINT64_MAX : n * es, "a metadata array")) return -1;
    int64_t shape = (int64_t)n;
    pn_array *a = pn_array_from_data(c->p, &shape, 1, (pn_dtype)VALUE_DTYPE[et]);
    c->p += n * es;
    int rc = a ? pn_gguf_meta_set_array(m, key, a) : -1;
    pn_release(a);
    return rc;
}

/* Stores a under key in p, refusing a key already there (a quantized tensor's scales or
 * biases meeting a tensor of that name, as MLX refuses). Returns 0 or -1 with an error. */
static int store(pn_params *p, const char *key, pn_array *a, const char *path)
{
    if (pn_params_get(p, key))
        return pn_set_error(PN_ERR_IO, "[load_gguf] %s: duplicate array name %s (a quantized "
                            "tensor's scales or biases clash with another tensor).", path, key);
    return pn_params_set(p, key, a);
}

/* Decodes the nbytes / block-size blocks at src of a tensor of shape (..., K) and block type
 * bt (index in BLOCK_TYPES) and stores them in p. Repacked types (bits > 0): name as uint32
 * (..., K bits / 32) (the values in order, little-endian), prefix.scales and prefix.biases as
 * float16 (..., K / 32), prefix being name less a trailing ".weight" (MLX's naming); the others:
 * name as float16 (..., K), each value rounded from its float decoding. Returns 0 or -1 with an
 * error. */
static int load_blocks(pn_params *p, const char *name, const unsigned char *src,
                       const int64_t *shape, int ndim, int bt, uint64_t nbytes, const char *path)
{
    const int bits = BLOCK_TYPES[bt].bits, bb = BLOCK_TYPES[bt].bytes;
    const uint64_t nblocks = nbytes / (uint64_t)bb;
    if (!bits) { /* dequantized: float16 values */
        const int nv = BLOCK_TYPES[bt].values;
        uint16_t *h = malloc(nblocks * (size_t)nv * 2 + 2);
        if (!h) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[load_gguf] Out of memory.");
        float y[256];
        for (uint64_t b = 0; b < nblocks; b++) {
            BLOCK_TYPES[bt].decode(src + b * (uint64_t)bb, y);
            for (int i = 0; i < nv; i++) h[b * (uint64_t)nv + i] = pnC_f32_to_f16(y[i]).bits;
        }
        pn_array *a = pn_array_from_data(h, shape, ndim, PN_FLOAT16);
        free(h);
        return a ? store(p, name, a, path) : -1;
    }
    const bool q41 = BLOCK_TYPES[bt].ggml == 3;
    uint32_t *w = malloc(nblocks * (size_t)bits * 4 + 4);
    uint16_t *d = malloc(nblocks * 2 + 2), *m = malloc(nblocks * 2 + 2);
    int rc = 0;
    if (!w || !d || !m) rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[load_gguf] Out of memory.");
    for (uint64_t b = 0; b < nblocks && rc == 0; b++) {
        const unsigned char *blk = src + b * (uint64_t)bb, *qs = blk + (q41 ? 4 : 2);
        memcpy(&d[b], blk, 2);
        if (q41) memcpy(&m[b], blk + 2, 2);
        uint8_t v[32];
        for (int i = 0; i < 32; i++)
            v[i] = bits == 8 ? (uint8_t)(qs[i] ^ 0x80) /* int8 q + 128 */
                   : i < 16  ? (uint8_t)(qs[i] & 15)
                             : (uint8_t)(qs[i - 16] >> 4);
        uint32_t *o = w + b * (uint64_t)bits; /* 32 values of bits each: bits words */
        memset(o, 0, 4 * (size_t)bits);
        for (int i = 0; i < 32; i++) o[i * bits / 32] |= (uint32_t)v[i] << (i * bits % 32);
    }
    int64_t ws[PNC_MAX_NDIM], ss[PNC_MAX_NDIM];
    memcpy(ws, shape, sizeof(int64_t) * ndim);
    memcpy(ss, shape, sizeof(int64_t) * ndim);
    ws[ndim - 1] = shape[ndim - 1] * bits / 32, ss[ndim - 1] = shape[ndim - 1] / 32;
    size_t len = strlen(name);
    char *key = rc ? NULL : malloc(len + 8);
    if (!rc && !key) rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[load_gguf] Out of memory.");
    if (rc == 0) {
        if (len >= 7 && !strcmp(name + len - 7, ".weight")) len -= 7;
        pn_array *wa = pn_array_from_data(w, ws, ndim, PN_UINT32);
        pn_array *sa = pn_array_from_data(d, ss, ndim, PN_FLOAT16);
        /* Q4_1: the stored m; Q4_0: -8 d; Q8_0: -128 d (exact in float16 unless it overflows) */
        pn_array *ba = q41 ? pn_array_from_data(m, ss, ndim, PN_FLOAT16)
                           : pn_multiply(sa, pn_scalar(bits == 8 ? -128 : -8, PN_FLOAT16));
        pn_array *all[3] = {wa, sa, ba};
        if (!wa || !sa || !ba || pn_eval(all, 3)) rc = -1;
        if (rc == 0 && store(p, name, wa, path)) rc = -1;
        sprintf(key, "%.*s.scales", (int)len, name);
        if (rc == 0 && store(p, key, sa, path)) rc = -1;
        sprintf(key, "%.*s.biases", (int)len, name);
        if (rc == 0 && store(p, key, ba, path)) rc = -1;
    }
    free(key), free(w), free(d), free(m);
    return rc;
}

static pn_params *load_image(cursor *c, pn_gguf_meta *meta)
{
    const unsigned char *start = c->p;
    char magic[4];
    uint32_t version, alignment = 32;
    uint64_t ntensors, nkv;
    if (rd(c, magic, 4, "the header") || memcmp(magic, "GGUF", 4))
        return pnC_fail(PN_ERR_IO, "[load_gguf] %s is not a GGUF file.", c->path);
    if (rd_u32(c, &version, "the header") || rd_u64(c, &ntensors, "the header") ||
        rd_u64(c, &nkv, "the header"))
        return NULL;
    if (version != 2 && version != 3)
        return pnC_fail(PN_ERR_IO, "[load_gguf] %s: GGUF version %u is not supported (2 or 3).",
                        c->path, version);
    /* a key/value pair takes at least 12 bytes, a tensor info at least 24 */
    if (need(c, nkv > UINT64_MAX / 12 ? UINT64_MAX : nkv * 12, "the metadata") ||
        need(c, ntensors > UINT64_MAX / 24 ? UINT64_MAX : ntensors * 24, "the tensor infos"))
        return NULL;
    for (uint64_t i = 0; i < nkv; i++) {
        char *key = rd_string(c, "a metadata key");
        uint32_t t;
        int rc = key ? rd_u32(c, &t, "a metadata type") : -1;
        if (rc == 0) rc = rd_value(c, t, meta, key, &alignment);
        free(key);
        if (rc) return NULL;
    }
    if (alignment == 0 || (alignment & (alignment - 1)))
        return pnC_fail(PN_ERR_IO, "[load_gguf] %s: general.alignment %u is not a power of two.",
                        c->path, alignment);
    typedef struct {
        char *name;
        int ndim;
        int64_t shape[PNC_MAX_NDIM];
        pn_dtype dtype;
        int blocks; /* index in BLOCK_TYPES + 1, or 0 */
        uint64_t offset, nbytes;
    } info;
    info *inf = calloc((size_t)ntensors + 1, sizeof *inf);
    if (!inf) return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[load_gguf] Out of memory.");
    pn_params *p = NULL;
    int rc = 0;
    for (uint64_t i = 0; i < ntensors && rc == 0; i++) {
        info *t = &inf[i];
        uint32_t nd, type;
        if (!(t->name = rd_string(c, "a tensor name")) || rd_u32(c, &nd, "a tensor rank")) {
            rc = -1;
            break;
        }
        if (nd > PNC_MAX_NDIM) {
            rc = pn_set_error(PN_ERR_IO, "[load_gguf] %s: tensor %s has %u dimensions.", c->path,
                              t->name, nd);
            break;
        }
        t->ndim = (int)nd;
        uint64_t count = 1;
        for (uint32_t k = 0; k < nd && rc == 0; k++) {
            uint64_t d;
            if (rd_u64(c, &d, "a tensor extent")) rc = -1;
            else if (d > (uint64_t)INT64_MAX || (d && count > UINT64_MAX / d))
                rc = pn_set_error(PN_ERR_IO, "[load_gguf] %s: tensor %s has an impossible extent.",
                                  c->path, t->name);
            else t->shape[nd - 1 - k] = (int64_t)d, count *= d; /* fastest-varying first */
        }
        if (rc || rd_u32(c, &type, "a tensor type") || rd_u64(c, &t->offset, "a tensor offset")) {
            rc = -1;
            break;
        }
        int k = 0, q = 0;
        while (k < NTENSOR_TYPES && TENSOR_TYPES[k].ggml != (int)type) k++;
        while (q < NBLOCK_TYPES && BLOCK_TYPES[q].ggml != (int)type) q++;
        if (k == NTENSOR_TYPES && q == NBLOCK_TYPES) {
            rc = pn_set_error(PN_ERR_IO, "[load_gguf] %s: tensor %s has ggml type %s (%u), which "
                              "Ponte does not decode (quantized types read: Q4_0, Q4_1, Q5_0, "
                              "Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ2_XXS, "
                              "IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, IQ4_NL, IQ4_XS, "
                              "TQ1_0, TQ2_0, MXFP4, NVFP4).", c->path, t->name, ggml_type_name(type), type);
            break;
        }
        if (k == NTENSOR_TYPES) { /* a block-quantized tensor: whole blocks along each row */
            const uint64_t nv = (uint64_t)BLOCK_TYPES[q].values;
            if (nd == 0 || t->shape[nd - 1] % (int64_t)nv) {
                rc = pn_set_error(PN_ERR_IO, "[load_gguf] %s: tensor %s of type %s has a row of "
                                  "%lld values, not a multiple of the block size %d.", c->path,
                                  t->name, ggml_type_name(type),
                                  nd ? (long long)t->shape[nd - 1] : 0LL, (int)nv);
                break;
            }
            if (count / nv > UINT64_MAX / (uint64_t)BLOCK_TYPES[q].bytes) {
                rc = pn_set_error(PN_ERR_IO, "[load_gguf] %s: tensor %s is too large.", c->path,
                                  t->name);
                break;
            }
            t->blocks = q + 1, t->dtype = BLOCK_TYPES[q].bits ? PN_UINT32 : PN_FLOAT16;
            t->nbytes = count / nv * (uint64_t)BLOCK_TYPES[q].bytes;
        } else {
            t->dtype = TENSOR_TYPES[k].dtype;
            size_t es = pn_dtype_size(t->dtype);
            if (count > UINT64_MAX / es) {
                rc = pn_set_error(PN_ERR_IO, "[load_gguf] %s: tensor %s is too large.", c->path,
                                  t->name);
                break;
            }
            t->nbytes = count * es;
        }
        for (uint64_t j = 0; j < i && rc == 0; j++)
            if (!strcmp(inf[j].name, t->name))
                rc = pn_set_error(PN_ERR_IO, "[load_gguf] %s: tensor %s appears twice.", c->path, t->name);
    }
    /* the data section starts at the next multiple of the alignment */
    uint64_t header = (uint64_t)(c->p - start);
    uint64_t data = (header + alignment - 1) / alignment * alignment;
    uint64_t size = (uint64_t)(c->end - start);
    if (rc == 0 && ntensors && data > size)
        rc = pn_set_error(PN_ERR_IO, "[load_gguf] %s: the data section starts past the end of the "
                          "file.", c->path);
    if (rc == 0 && !(p = pn_params_new())) rc = -1;
    for (uint64_t i = 0; i < ntensors && rc == 0; i++) {
        info *t = &inf[i];
        if (t->offset > size - data || t->nbytes > size - data - t->offset) {
            rc = pn_set_error(PN_ERR_IO, "[load_gguf] %s: the data of tensor %s lies outside the "
                              "file.", c->path, t->name);
            break;
        }
        pn_scope_push();
        if (t->blocks) {
            rc = load_blocks(p, t->name, start + data + t->offset, t->shape, t->ndim,
                             t->blocks - 1, t->nbytes, c->path);
        } else {
            pn_array *a = pn_array_from_data(start + data + t->offset, t->shape, t->ndim,
                                             t->dtype);
            if (!a || store(p, t->name, a, c->path)) rc = -1;
        }
        pn_scope_pop();
    }
    for (uint64_t i = 0; i < ntensors; i++) free(inf[i].name);
    free(inf);
    if (rc) {
        pn_params_free(p);
        return NULL;
    }
    return p;
}

pn_params *pnI_load_gguf(const unsigned char *buf, size_t size, const char *path,
                         pn_gguf_meta **metadata)
{
    if (metadata) *metadata = NULL;
    pn_gguf_meta *m = pn_gguf_meta_new();
    cursor c = {buf, buf + size, path};
    pn_params *p = m ? load_image(&c, m) : NULL;
    if (!p || !metadata) pn_gguf_meta_free(m);
    else *metadata = m;
    return p;
}

/* ───────────────────────────── writing ───────────────────────────── */

typedef struct {
    unsigned char *b;
    size_t n, cap;
    bool oom;
} bytes;

static void put(bytes *o, const void *src, size_t k)
{
    if (o->oom) return;
    if (o->n + k > o->cap) {
        size_t cap = (o->cap + k) * 2;
        unsigned char *b = realloc(o->b, cap);
        if (!b) {
            o->oom = true;
            return;
        }
        o->b = b, o->cap = cap;
    }
    if (k) memcpy(o->b + o->n, src, k);
    o->n += k;
}

static void put_u32(bytes *o, uint32_t v) { put(o, &v, 4); }
static void put_u64(bytes *o, uint64_t v) { put(o, &v, 8); }
static void put_str(bytes *o, const char *s)
{
    put_u64(o, strlen(s));
    put(o, s, strlen(s));
}
static void pad_to(bytes *o, size_t align)
{
    static const unsigned char zeros[64] = {0};
    put(o, zeros, (align - o->n % align) % align);
}

/* The value type of a metadata array's dtype (-1: not storable). */
static int value_type_of(pn_dtype t)
{
    for (int v = 0; v < NVALUE_TYPES; v++)
        if (VALUE_DTYPE[v] == (int)t) return v;
    return -1;
}

int pnI_save_gguf(const pn_writer *w, const pn_params *arrays, const pn_gguf_meta *metadata)
{
    int n = pn_params_count(arrays), nm = pn_gguf_meta_count(metadata);
    int *types = calloc((size_t)n + 1, sizeof *types);
    if (!types) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[save_gguf] Out of memory.");
    for (int i = 0; i < n; i++) {
        pn_dtype dt = pn_array_dtype(pn_params_at(arrays, i));
        int k = 0;
        while (k < NTENSOR_TYPES && TENSOR_TYPES[k].dtype != dt) k++;
        if (k == NTENSOR_TYPES) {
            free(types);
            return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[save_gguf] dtype %s is not supported "
                                "(array %s).", pn_dtype_name(dt), pn_params_name(arrays, i));
        }
        types[i] = TENSOR_TYPES[k].ggml;
    }
    for (int i = 0; i < nm; i++) {
        pn_array *a = metadata->e[i].array;
        if (a && (pn_ndim(a) > 1 || value_type_of(pn_array_dtype(a)) < 0)) {
            free(types);
            return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[save_gguf] Metadata %s: only 0-d and 1-d "
                                "arrays of bool, integer, float32 or float64 can be saved (got a %d-d "
                                "%s array).", metadata->e[i].key, pn_ndim(a),
                                pn_dtype_name(pn_array_dtype(a)));
        }
    }
    bytes o = {0};
    put(&o, "GGUF", 4);
    put_u32(&o, 3);
    put_u64(&o, (uint64_t)n);
    put_u64(&o, (uint64_t)nm);
    int rc = 0;
    for (int i = 0; i < nm && rc == 0; i++) {
        const meta_entry *e = &metadata->e[i];
        put_str(&o, e->key);
        if (!e->array) {
            if (e->is_list) {
                put_u32(&o, V_ARRAY), put_u32(&o, V_STRING), put_u64(&o, (uint64_t)e->nstrs);
            } else {
                put_u32(&o, V_STRING);
            }
            for (int64_t j = 0; j < e->nstrs; j++) put_str(&o, e->strs[j]);
            continue;
        }
        const void *d = pn_data(e->array);
        if (!d) {
            rc = -1;
            break;
        }
        int vt = value_type_of(pn_array_dtype(e->array));
        if (pn_ndim(e->array) == 1) put_u32(&o, V_ARRAY), put_u32(&o, (uint32_t)vt), put_u64(&o, (uint64_t)pn_size(e->array));
        else put_u32(&o, (uint32_t)vt);
        put(&o, d, pn_nbytes(e->array));
    }
    uint64_t off = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        pn_array *a = pn_params_at(arrays, i);
        put_str(&o, pn_params_name(arrays, i));
        put_u32(&o, (uint32_t)pn_ndim(a));
        for (int k = pn_ndim(a) - 1; k >= 0; k--) put_u64(&o, (uint64_t)pn_shape(a)[k]);
        put_u32(&o, (uint32_t)types[i]);
        put_u64(&o, off);
        off += (pn_nbytes(a) + 31) / 32 * 32;
    }
    pad_to(&o, 32);
    for (int i = 0; i < n && rc == 0; i++) {
        pn_array *a = pn_params_at(arrays, i);
        const void *d = pn_data(a);
        if (!d) {
            rc = -1;
            break;
        }
        put(&o, d, pn_nbytes(a));
        pad_to(&o, 32);
    }
    free(types);
    if (rc == 0 && o.oom) rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[save_gguf] Out of memory.");
    if (rc == 0) {
        const void *parts[1] = {o.b};
        size_t sizes[1] = {o.n};
        rc = pnI_write_parts(w, parts, sizes, 1);
    }
    free(o.b);
    return rc;
}
