/* test_gguf_quant.c — quantized GGUF tensors (src/io/gguf.c): hand-built files holding Q4_0,
 * Q4_1 and Q8_0 blocks load as MLX's affine format (packed uint32 values, float16 scales and
 * biases per 32, 4 or 8 bits) and their dequantized values match a float64 decoder of the
 * blocks; Q5_0, Q5_1, the k-quants (Q2_K..Q8_K), IQ4_NL and IQ4_XS blocks, encoded here from
 * random quants and scales following ggml's layouts, load as float16 equal to the float64
 * values, and so do IQ2_XXS, IQ3_S (a few grid entries written out here), MXFP4, NVFP4 and
 * TQ1_0 blocks built from the formats' definitions; every truncation, rows that are not whole
 * blocks, data one byte short, huge extents and undecoded types (Q1_0, Q8_1) fail with
 * PN_ERR_IO. */
#include "harness.h"

#include <math.h>
#include <string.h>

/* The float16 bits of x, a normal float16 value (exact). */
static uint16_t f16_bits(double x)
{
    int e;
    double m = frexp(fabs(x), &e); /* x = m 2^e, m in [.5, 1) */
    uint16_t mant = (uint16_t)((m * 2 - 1) * 1024);
    return (uint16_t)((x < 0 ? 0x8000 : 0) | (uint16_t)(e - 1 + 15) << 10 | mant);
}

typedef struct {
    unsigned char *b;
    size_t n, cap;
} buf;

static void put(buf *o, const void *p, size_t k)
{
    if (k == 0) return; /* memcpy from or to NULL is undefined even for 0 bytes */
    if (o->n + k > o->cap) {
        o->cap = (o->n + k) * 2;
        o->b = realloc(o->b, o->cap);
    }
    memcpy(o->b + o->n, p, k);
    o->n += k;
}
static void put_u32(buf *o, uint32_t v)
{
    put(o, &v, 4);
}
static void put_u64(buf *o, uint64_t v)
{
    put(o, &v, 8);
}

/* A GGUF v3 image with one tensor: name "t", extents dims (fastest first), ggml type, data. */
static buf gguf_image(const uint64_t *dims, int nd, uint32_t type, const buf *data)
{
    buf o = {0};
    put(&o, "GGUF", 4);
    put_u32(&o, 3), put_u64(&o, 1), put_u64(&o, 0);
    put_u64(&o, 1), put(&o, "t", 1), put_u32(&o, (uint32_t)nd);
    for (int i = 0; i < nd; i++)
        put_u64(&o, dims[i]);
    put_u32(&o, type), put_u64(&o, 0);
    while (o.n % 32)
        put(&o, "", 1);
    put(&o, data->b, data->n);
    return o;
}

static void write_file(const char *path, const buf *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    fwrite(b->b, 1, n, f);
    fclose(f);
}

/* nblocks random blocks of a type (2: Q4_0, 3: Q4_1, 8: Q8_0) into data; their values into
 * vals (32 per block). */
static void make_blocks(uint32_t type, int64_t nblocks, buf *data, double *vals)
{
    for (int64_t b = 0; b < nblocks; b++) {
        double d = (double)(int)test_uniform(-128, 128) / 64,
               m = (double)(int)test_uniform(-64, 64) / 32;
        if (d == 0)
            d = 0.5;
        if (m == 0)
            m = -0.25;
        uint16_t db = f16_bits(d), mb = f16_bits(m);
        put(data, &db, 2);
        if (type == 8) {
            for (int i = 0; i < 32; i++) {
                int8_t q = (int8_t)(int)test_uniform(-128, 128);
                put(data, &q, 1);
                vals[b * 32 + i] = d * q;
            }
            continue;
        }
        if (type == 3)
            put(data, &mb, 2);
        int q[32];
        for (int i = 0; i < 32; i++)
            q[i] = (int)test_uniform(0, 16) & 15;
        for (int i = 0; i < 16; i++) {
            unsigned char byte = (unsigned char)(q[i] | q[i + 16] << 4);
            put(data, &byte, 1);
        }
        for (int i = 0; i < 32; i++)
            vals[b * 32 + i] = type == 3 ? d * q[i] + m : d * (q[i] - 8);
    }
}

/* ───────────── the dequantized types: blocks encoded from chosen quants ───────────── */

/* Sets nbits bits of v at bit shift of byte k of blk. */
static void setb(unsigned char *blk, int k, int shift, int nbits, int v)
{
    blk[k] = (unsigned char)((blk[k] & ~(((1 << nbits) - 1) << shift)) |
                             ((v & ((1 << nbits) - 1)) << shift));
}

static void put_f16(unsigned char *blk, int k, double x)
{
    uint16_t h = f16_bits(x);
    memcpy(blk + k, &h, 2);
}

/* A random normal float16 value in +-[1/8, 1) (exact in float64). */
static double rand_scale(void)
{
    double v = (double)(int)test_uniform(128, 1024) / 1024;
    return test_uniform(0, 1) < 0.5 ? -v : v;
}

static int rint_(int lo, int hi) /* uniform integer in [lo, hi) */
{
    int v = (int)test_uniform(lo, hi);
    return v < lo ? lo : v >= hi ? hi - 1 : v;
}

static const int GRID[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                             1,    13,   25,  38,  53,  69,  89,  113};

/* One random block of ggml type t (values per block vpb, bytes bpb) into blk, and its values
 * into y, written from ggml's layouts: where each quant's bits and each scale sit. */
static void encode_block(uint32_t t, unsigned char *blk, int bpb, double *y)
{
    memset(blk, 0, (size_t)bpb);
    if (t == 6 || t == 7) { /* Q5_0 / Q5_1: d, (m), qh, nibbles */
        double d = rand_scale(), m = rand_scale();
        int o = t == 7 ? 4 : 2;
        put_f16(blk, 0, d);
        if (t == 7) put_f16(blk, 2, m);
        for (int i = 0; i < 32; i++) {
            int q = rint_(0, 32);
            setb(blk, o + 4 + i % 16, 4 * (i / 16), 4, q & 15);
            setb(blk, o + i / 8, i % 8, 1, q >> 4);
            y[i] = t == 7 ? d * q + m : d * (q - 16);
        }
    } else if (t == 10 || t == 11) { /* Q2_K / Q3_K */
        double d = rand_scale(), dmin = rand_scale();
        int sc[16], mn[16];
        for (int j = 0; j < 16; j++) sc[j] = rint_(0, t == 10 ? 16 : 64), mn[j] = rint_(0, 16);
        if (t == 10) {
            for (int j = 0; j < 16; j++) blk[j] = (unsigned char)(sc[j] | mn[j] << 4);
            put_f16(blk, 80, d), put_f16(blk, 82, dmin);
        } else {
            for (int j = 0; j < 16; j++) {
                setb(blk, 96 + j % 8, 4 * (j / 8), 4, sc[j] & 15);
                setb(blk, 96 + 8 + j % 4, 2 * (j / 4), 2, sc[j] >> 4);
            }
            put_f16(blk, 108, d);
        }
        for (int i = 0; i < 256; i++) {
            int h = i / 128, j = i % 128, st = j / 32, l = j % 32;
            int q = rint_(0, t == 10 ? 4 : 8);
            setb(blk, (t == 10 ? 16 : 32) + 32 * h + l, 2 * st, 2, q & 3);
            if (t == 11) setb(blk, l, 4 * h + st, 1, q >> 2);
            int is = i / 16;
            y[i] = t == 10 ? d * sc[is] * q - dmin * mn[is] : d * (sc[is] - 32) * (q - 4);
        }
    } else if (t == 12 || t == 13) { /* Q4_K / Q5_K */
        double d = rand_scale(), dmin = rand_scale();
        put_f16(blk, 0, d), put_f16(blk, 2, dmin);
        int sc[8], mn[8];
        for (int j = 0; j < 8; j++) {
            sc[j] = rint_(0, 64), mn[j] = rint_(0, 64);
            if (j < 4) {
                setb(blk, 4 + j, 0, 6, sc[j]), setb(blk, 4 + j + 4, 0, 6, mn[j]);
            } else {
                setb(blk, 4 + j + 4, 0, 4, sc[j] & 15), setb(blk, 4 + j + 4, 4, 4, mn[j] & 15);
                setb(blk, 4 + j - 4, 6, 2, sc[j] >> 4), setb(blk, 4 + j, 6, 2, mn[j] >> 4);
            }
        }
        int qo = t == 13 ? 48 : 16;
        for (int i = 0; i < 256; i++) {
            int j = i / 32, l = i % 32, q = rint_(0, t == 13 ? 32 : 16);
            setb(blk, qo + 32 * (j / 2) + l, 4 * (j % 2), 4, q & 15);
            if (t == 13) setb(blk, 16 + l, j, 1, q >> 4);
            y[i] = d * sc[j] * q - dmin * mn[j];
        }
    } else if (t == 14) { /* Q6_K: ql, qh, int8 scales, d */
        double d = rand_scale();
        put_f16(blk, 208, d);
        int sc[16];
        for (int j = 0; j < 16; j++)
            sc[j] = rint_(-128, 128), blk[192 + j] = (unsigned char)(int8_t)sc[j];
        for (int i = 0; i < 256; i++) {
            int h = i / 128, j = i % 128, k = j / 32, l = j % 32, q = rint_(0, 64);
            setb(blk, 64 * h + l + 32 * (k % 2), 4 * (k / 2), 4, q & 15);
            setb(blk, 128 + 32 * h + l, 2 * k, 2, q >> 4);
            y[i] = d * sc[8 * h + l / 16 + 2 * k] * (q - 32);
        }
    } else if (t == 15) { /* Q8_K: f32 d, int8 quants, int16 sums */
        float d = (float)rand_scale();
        memcpy(blk, &d, 4);
        for (int i = 0; i < 256; i++) {
            int q = rint_(-128, 128);
            blk[4 + i] = (unsigned char)(int8_t)q;
            y[i] = (double)d * q;
        }
    } else if (t == 20) { /* IQ4_NL: d, nibbles into the grid */
        double d = rand_scale();
        put_f16(blk, 0, d);
        for (int i = 0; i < 32; i++) {
            int q = rint_(0, 16);
            setb(blk, 2 + i % 16, 4 * (i / 16), 4, q);
            y[i] = d * GRID[q];
        }
    } else if (t == 23) { /* IQ4_XS: d, scales_h, scales_l, nibbles */
        double d = rand_scale();
        put_f16(blk, 0, d);
        for (int b = 0; b < 8; b++) {
            int ls = rint_(0, 64);
            setb(blk, 4 + b / 2, 4 * (b % 2), 4, ls & 15);
            setb(blk, 2 + b / 4, 2 * (b % 4), 2, ls >> 4);
            for (int l = 0; l < 32; l++) {
                int q = rint_(0, 16);
                setb(blk, 8 + 16 * b + l % 16, 4 * (l / 16), 4, q);
                y[32 * b + l] = d * (ls - 32) * GRID[q];
            }
        }
    }
}

TEST(gguf_dequantized_types)
{
    pn_scope_push();
    /* ggml type, values and bytes per block */
    const int types[][3] = {{6, 32, 22},   {7, 32, 24},   {10, 256, 84}, {11, 256, 110},
                            {12, 256, 144}, {13, 256, 176}, {14, 256, 210}, {15, 256, 292},
                            {20, 32, 18},  {23, 256, 136}};
    const int ntypes = (int)(sizeof types / sizeof types[0]);
    for (int t = 0; t < ntypes; t++) {
        const int vpb = types[t][1], bpb = types[t][2];
        /* (K), (3, 2K), (2, 2, K): extents fastest first */
        const uint64_t shapes[3][3] = {{(uint64_t)vpb, 0, 0}, {2 * (uint64_t)vpb, 3, 0},
                                       {(uint64_t)vpb, 2, 2}};
        const int nds[3] = {1, 2, 3};
        for (int s = 0; s < 3; s++) {
            int nd = nds[s];
            int64_t count = 1, shape[3];
            for (int i = 0; i < nd; i++)
                count *= (int64_t)shapes[s][i], shape[nd - 1 - i] = (int64_t)shapes[s][i];
            int64_t nb = count / vpb;
            unsigned char *blocks = malloc((size_t)(nb * bpb));
            double *vals = malloc(sizeof(double) * (size_t)count);
            for (int64_t b = 0; b < nb; b++)
                encode_block((uint32_t)types[t][0], blocks + b * bpb, bpb, vals + b * vpb);
            buf data = {0};
            put(&data, blocks, (size_t)(nb * bpb));
            buf img = gguf_image(shapes[s], nd, (uint32_t)types[t][0], &data);
            const char *path = test_tmp_path("k.gguf");
            write_file(path, &img, img.n);
            pn_params *p = pn_load_gguf(path, NULL);
            CHECK_MSG(p != NULL, "type %d: %s", types[t][0], pn_last_error_message());
            pn_array *a = p ? pn_params_get(p, "t") : NULL;
            CHECK(a && pn_params_count(p) == 1);
            if (a) {
                CHECK(pn_array_dtype(a) == PN_FLOAT16 && pn_ndim(a) == nd);
                for (int i = 0; a && i < nd; i++)
                    CHECK(pn_shape(a)[i] == shape[i]);
                double *v = test_to_f64(a), vmax = 0;
                for (int64_t i = 0; i < count; i++)
                    vmax = fmax(vmax, fabs(vals[i]));
                int bad = 0;
                for (int64_t i = 0; v && i < count; i++) /* float16 of the float32 decoding */
                    bad += fabs(v[i] - vals[i]) > fabs(vals[i]) * 0x1p-10 + vmax * 1e-6;
                CHECK_MSG(bad == 0 && vmax > 0, "type %d shape %d: %d of %lld values differ",
                          types[t][0], s, bad, (long long)count);
                free(v);
            }
            pn_params_free(p);
            /* truncations (a sample of them), and the data one byte short, fail cleanly */
            int accepted = 0;
            for (size_t cut = 0; cut < img.n; cut += test_quick() ? 61 : 7) {
                write_file(path, &img, cut);
                pn_clear_error();
                pn_params *q = pn_load_gguf(path, NULL);
                accepted += q || pn_last_error() != PN_ERR_IO;
                pn_params_free(q);
            }
            write_file(path, &img, img.n - 1);
            pn_clear_error();
            pn_params *q = pn_load_gguf(path, NULL);
            accepted += q || !strstr(pn_last_error_message(), "outside the file");
            pn_params_free(q);
            pn_clear_error();
            CHECK_MSG(accepted == 0, "type %d: %d truncations accepted", types[t][0], accepted);
            free(blocks), free(vals), free(data.b), free(img.b);
        }
    }
    pn_scope_pop();
}

/* ───── IQ2_XXS, IQ3_S, MXFP4, NVFP4, TQ1_0: blocks built from the formats' definitions ───── */

/* A few of ggml's grid entries (values 0..7 / 0..3 of iq2xxs_grid / iq3s_grid), the only ones the
 * blocks below use: a check of the generated tables independent of them. */
static const struct {
    int idx, v[8];
} IQ2XXS_ENTRIES[4] = {{0, {8, 8, 8, 8, 8, 8, 8, 8}},
                       {1, {43, 8, 8, 8, 8, 8, 8, 8}},
                       {100, {8, 25, 8, 8, 8, 43, 25, 8}},
                       {255, {8, 25, 8, 8, 25, 43, 43, 43}}},
  IQ3S_ENTRIES[4] = {{0, {1, 1, 1, 1}}, {77, {9, 5, 9, 1}}, {300, {3, 5, 3, 7}}, {511, {1, 1, 15, 15}}};

/* An e2m1 code (OCP MX: sign bit 3, exponent bits 2..1 (bias 1), mantissa bit 0) as a double. */
static double e2m1(int q)
{
    int e = (q >> 1) & 3, m = q & 1;
    double v = e ? (1 + m / 2.0) * ldexp(1, e - 1) : m / 2.0;
    return q & 8 ? -v : v;
}

/* Fills one block of type t (16: IQ2_XXS, 21: IQ3_S, 39: MXFP4, 40: NVFP4, 34: TQ1_0) at blk
 * from random quants, and its values into y. */
static void encode_new_block(uint32_t t, unsigned char *blk, int bpb, double *y)
{
    memset(blk, 0, (size_t)bpb);
    if (t == 16) { /* IQ2_XXS: per 32: 4 grid index bytes, u32 (signs 4 x 7 bits, scale << 28) */
        double d = rand_scale();
        put_f16(blk, 0, d);
        for (int ib = 0; ib < 8; ib++) {
            uint32_t ls = (uint32_t)rint_(0, 16), aux = ls << 28;
            for (int l = 0; l < 4; l++) {
                int e = rint_(0, 4), s7 = rint_(0, 128), par = 0;
                blk[2 + 8 * ib + l] = (unsigned char)IQ2XXS_ENTRIES[e].idx;
                aux |= (uint32_t)s7 << (7 * l);
                for (int j = 0; j < 7; j++) par ^= (s7 >> j) & 1;
                int signs = s7 | par << 7; /* an even number of minus signs */
                for (int j = 0; j < 8; j++)
                    y[32 * ib + 8 * l + j] = d * (0.5 + ls) / 4 * IQ2XXS_ENTRIES[e].v[j] *
                                             ((signs >> j) & 1 ? -1 : 1);
            }
            memcpy(blk + 2 + 8 * ib + 4, &aux, 4);
        }
    } else if (t == 21) { /* IQ3_S: d, qs, qh (ninth bits), signs, 4-bit scales */
        double d = rand_scale();
        put_f16(blk, 0, d);
        for (int ib = 0; ib < 8; ib++) {
            int s = rint_(0, 16);
            setb(blk, 106 + ib / 2, 4 * (ib % 2), 4, s);
            for (int e = 8 * ib; e < 8 * ib + 8; e++) { /* grid entries of 4 values */
                int k = rint_(0, 4), idx = IQ3S_ENTRIES[k].idx;
                blk[2 + e] = (unsigned char)(idx & 255);
                setb(blk, 66 + e / 8, e % 8, 1, idx >> 8);
                for (int j = 0; j < 4; j++) {
                    int i = 4 * e + j, neg = rint_(0, 2);
                    setb(blk, 74 + i / 8, i % 8, 1, neg);
                    y[i] = d * (1 + 2 * s) * IQ3S_ENTRIES[k].v[j] * (neg ? -1 : 1);
                }
            }
        }
    } else if (t == 39 || t == 40) { /* MXFP4: e8m0 x 2^-127; NVFP4: 4 e4m3 scales per 16 */
        int per = t == 39 ? 32 : 16, nsub = t == 39 ? 1 : 4, qo = t == 39 ? 1 : 4;
        for (int sb = 0; sb < nsub; sb++) {
            double sc;
            if (t == 39) {
                int e = rint_(118, 140);
                blk[0] = (unsigned char)e, sc = ldexp(1, e - 127);
            } else { /* a random e4m3 byte but 0x7f (NaN), subnormals included */
                int x = rint_(1, 0x7f), e = x >> 3, m = x & 7;
                blk[sb] = (unsigned char)x;
                sc = e ? (1 + m / 8.0) * ldexp(1, e - 7) : m / 8.0 * ldexp(1, -6);
            }
            for (int j = 0; j < per; j++) { /* value j: byte j % (per/2), nibble j / (per/2) */
                int q = rint_(0, 16), half = per / 2;
                setb(blk, qo + sb * half + j % half, 4 * (j / half), 4, q);
                y[sb * per + j] = sc * e2m1(q);
            }
        }
    } else if (t == 34) { /* TQ1_0: trits t in base 3, 5 (4) per byte as ceil(v 256 / 243) */
        double d = rand_scale();
        put_f16(blk, 52, d);
        const int spans[3][4] = {{0, 32, 5, 0}, {32, 16, 5, 160}, {48, 4, 4, 240}};
        for (int sp = 0; sp < 3; sp++)
            for (int j = 0; j < spans[sp][1]; j++) {
                int v = 0;
                for (int k = 0; k < 5; k++) { /* digit k: value base + k n + j, weight 3^(4-k) */
                    int tr = k < spans[sp][2] ? rint_(0, 3) : 0;
                    v = 3 * v + tr;
                    if (k < spans[sp][2]) y[spans[sp][3] + k * spans[sp][1] + j] = d * (tr - 1);
                }
                blk[spans[sp][0] + j] = (unsigned char)((v * 256 + 242) / 243);
            }
    }
}

TEST(gguf_iq_fp4_ternary_blocks)
{
    pn_scope_push();
    const int types[][3] = {{16, 256, 66}, {21, 256, 110}, {39, 32, 17}, {40, 64, 36}, {34, 256, 54}};
    for (int t = 0; t < (int)(sizeof types / sizeof types[0]); t++) {
        const int vpb = types[t][1], bpb = types[t][2], rows = 3, nb = rows * 2;
        const uint64_t dims[2] = {2 * (uint64_t)vpb, rows}; /* (3, 2 blocks) */
        unsigned char *blocks = malloc((size_t)(nb * bpb));
        double *vals = malloc(sizeof(double) * (size_t)(nb * vpb));
        for (int b = 0; b < nb; b++)
            encode_new_block((uint32_t)types[t][0], blocks + b * bpb, bpb, vals + b * vpb);
        buf data = {0};
        put(&data, blocks, (size_t)(nb * bpb));
        buf img = gguf_image(dims, 2, (uint32_t)types[t][0], &data);
        const char *path = test_tmp_path("n.gguf");
        write_file(path, &img, img.n);
        pn_params *p = pn_load_gguf(path, NULL);
        CHECK_MSG(p != NULL, "type %d: %s", types[t][0], pn_last_error_message());
        pn_array *a = p ? pn_params_get(p, "t") : NULL;
        if (a) {
            CHECK(pn_array_dtype(a) == PN_FLOAT16 && pn_ndim(a) == 2 && pn_shape(a)[0] == rows &&
                  pn_shape(a)[1] == 2 * vpb);
            double *v = test_to_f64(a);
            int bad = 0, nonzero = 0;
            for (int i = 0; v && i < nb * vpb; i++) { /* float16 of the exact value: half an ulp */
                bad += fabs(v[i] - vals[i]) > fabs(vals[i]) * 0x1p-11;
                nonzero += vals[i] != 0;
            }
            CHECK_MSG(bad == 0 && nonzero > nb * vpb / 2, "type %d: %d of %d values differ",
                      types[t][0], bad, nb * vpb);
            free(v);
        }
        pn_params_free(p);
        /* the data one byte short, and a sample of truncations, fail cleanly */
        int accepted = 0;
        for (size_t cut = img.n - 1; cut > 0; cut = cut > 37 ? cut - 37 : 0) {
            write_file(path, &img, cut);
            pn_clear_error();
            pn_params *q = pn_load_gguf(path, NULL);
            accepted += q || pn_last_error() != PN_ERR_IO;
            pn_params_free(q);
        }
        pn_clear_error();
        CHECK_MSG(accepted == 0, "type %d: %d truncations accepted", types[t][0], accepted);
        free(blocks), free(vals), free(data.b), free(img.b);
    }
    pn_scope_pop();
}

TEST(gguf_quantized_blocks_decode)
{
    pn_scope_push();
    const uint32_t types[3] = {2, 3, 8};
    const uint64_t shapes[3][3] = {{64, 3, 0}, {32, 0, 0}, {32, 2, 2}};
    const int nds[3] = {2, 1, 3};
    for (int t = 0; t < 3; t++)
        for (int s = 0; s < 3; s++) {
            int nd = nds[s];
            int64_t count = 1, shape[3];
            for (int i = 0; i < nd; i++)
                count *= (int64_t)shapes[s][i], shape[nd - 1 - i] = (int64_t)shapes[s][i];
            buf data = {0};
            double *vals = malloc(sizeof(double) * (size_t)count);
            make_blocks(types[t], count / 32, &data, vals);
            buf img = gguf_image(shapes[s], nd, types[t], &data);
            const char *path = test_tmp_path("q.gguf");
            write_file(path, &img, img.n);
            pn_params *p = pn_load_gguf(path, NULL);
            CHECK_MSG(p != NULL, "type %u: %s", types[t], pn_last_error_message());
            pn_array *w = p ? pn_params_get(p, "t") : NULL,
                     *sc = p ? pn_params_get(p, "t.scales") : NULL,
                     *bi = p ? pn_params_get(p, "t.biases") : NULL;
            CHECK(w && sc && bi && pn_params_count(p) == 3);
            int bits = types[t] == 8 ? 8 : 4;
            if (w && sc && bi) {
                CHECK(pn_array_dtype(w) == PN_UINT32 && pn_array_dtype(sc) == PN_FLOAT16 &&
                      pn_array_dtype(bi) == PN_FLOAT16 && pn_ndim(w) == nd);
                CHECK(pn_shape(w)[nd - 1] == shape[nd - 1] * bits / 32 &&
                      pn_shape(sc)[nd - 1] == shape[nd - 1] / 32 &&
                      pn_shape(bi)[nd - 1] == shape[nd - 1] / 32);
                /* decode in float64: value i of a row is bits [i bits, (i + 1) bits) */
                double *wv = test_to_f64(w), *sv = test_to_f64(sc), *bv = test_to_f64(bi);
                int64_t wpr = shape[nd - 1] * bits / 32, rows = count / shape[nd - 1];
                int bad = 0;
                for (int64_t r = 0; wv && sv && bv && r < rows; r++)
                    for (int64_t i = 0; i < shape[nd - 1]; i++) {
                        uint32_t word = (uint32_t)wv[r * wpr + i * bits / 32];
                        int q = (int)(word >> (i * bits % 32)) & ((1 << bits) - 1);
                        int64_t g = r * (shape[nd - 1] / 32) + i / 32;
                        double v = sv[g] * q + bv[g];
                        bad += v != vals[r * shape[nd - 1] + i];
                    }
                CHECK_MSG(bad == 0, "type %u shape %d: %d values differ", types[t], s, bad);
                free(wv), free(sv), free(bv);
            }
            pn_params_free(p);
            /* every truncation fails cleanly */
            int accepted = 0;
            for (size_t cut = 0; cut < img.n; cut += test_quick() ? 13 : 1) {
                write_file(path, &img, cut);
                pn_clear_error();
                pn_params *q = pn_load_gguf(path, NULL);
                if (q || pn_last_error() != PN_ERR_IO)
                    accepted++;
                pn_params_free(q);
            }
            pn_clear_error();
            CHECK_MSG(accepted == 0, "type %u: %d truncations accepted", types[t], accepted);
            free(vals), free(data.b), free(img.b);
        }
    pn_scope_pop();
}

/* The load's error message for one tensor (NULL when it loaded). */
static const char *load_error(const uint64_t *dims, int nd, uint32_t type, size_t nbytes)
{
    buf data = {0};
    unsigned char z[64] = {0};
    while (data.n < nbytes)
        put(&data, z, nbytes - data.n < 64 ? nbytes - data.n : 64);
    if (!data.b)
        put(&data, z, 0);
    buf img = gguf_image(dims, nd, type, &data);
    const char *path = test_tmp_path("e.gguf");
    write_file(path, &img, img.n);
    free(data.b), free(img.b);
    pn_clear_error();
    pn_params *p = pn_load_gguf(path, NULL);
    if (p) {
        pn_params_free(p);
        return NULL;
    }
    CHECK(pn_last_error() == PN_ERR_IO);
    return pn_last_error_message();
}

TEST(gguf_quantized_refusals)
{
    pn_scope_push();
    const char *e = load_error((uint64_t[]){48}, 1, 2, 36);
    CHECK(e && strstr(e, "multiple of the block size"));
    e = load_error((uint64_t[]){128}, 1, 41, 18); /* Q1_0: not decoded */
    CHECK(e && strstr(e, "Q1_0"));
    e = load_error((uint64_t[]){32}, 1, 9, 36); /* Q8_1: a dot-product type, not decoded */
    CHECK(e && strstr(e, "Q8_1"));
    e = load_error((uint64_t[]){128, 2}, 2, 12, 288); /* Q4_K rows of half a block */
    CHECK(e && strstr(e, "Q4_K") && strstr(e, "multiple of the block size 256"));
    e = load_error((uint64_t[]){48}, 1, 6, 66); /* Q5_0 */
    CHECK(e && strstr(e, "multiple of the block size 32"));
    e = load_error((uint64_t[]){256, 3}, 2, 14, 629); /* Q6_K: a byte short of 3 blocks */
    CHECK(e && strstr(e, "outside the file"));
    e = load_error((uint64_t[]){1ull << 40, 1ull << 30}, 2, 15, 64); /* Q8_K: huge */
    CHECK(e != NULL);
    CHECK(load_error((uint64_t[]){256, 0}, 2, 10, 0) == NULL); /* empty Q2_K */
    e = load_error((uint64_t[]){1ull << 40, 1ull << 20}, 2, 8, 64);
    CHECK(e != NULL);
    e = load_error((uint64_t[]){1ull << 62, 1ull << 1}, 2, 8, 64);
    CHECK(e != NULL);
    e = load_error((uint64_t[]){64, 2}, 2, 3, 79); /* one byte short of 4 blocks */
    CHECK(e && strstr(e, "outside the file"));
    e = load_error(NULL, 0, 2, 18); /* a 0-d quantized tensor */
    CHECK(e != NULL);
    CHECK(load_error((uint64_t[]){32, 0}, 2, 2, 0) == NULL); /* empty: no blocks */
    pn_clear_error();
    pn_scope_pop();
}
